"""The whole study as cached, resumable stages: `reproduce(settings, out)`."""

from conceptlens.study.reproduce import ReproduceSettings, reproduce, preset

__all__ = ["ReproduceSettings", "reproduce", "preset"]
