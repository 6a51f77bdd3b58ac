"""democtl: a scheduled GitOps reconciler for Splits Network demo environments."""

__version__ = "0.1.0"
