"""ibtasks: Xen ImageBuilder reimplemented as a doit task graph."""

__version__ = "0.1.0"
