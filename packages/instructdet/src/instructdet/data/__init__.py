"""Working records (``records``), converters (``converters``), export / validation (``export``) and
the sample photos (``sample``); import the submodules directly."""
