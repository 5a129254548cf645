"""Testing helpers shipped with the package: hypothesis strategies (``strategies``)."""
