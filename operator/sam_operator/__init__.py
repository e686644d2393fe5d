"""sam-operator: reconciles SamModel resources into SAM encoder services."""

__version__ = "0.1.0"
