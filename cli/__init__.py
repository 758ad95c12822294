"""The ``ntm`` command line (Click). Heavy imports live inside command bodies."""
