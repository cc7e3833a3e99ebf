"""The parts of ``python -m futurelat.cache`` (:mod:`futurelat.cache`): the backbone and ``cache_info.json``
(:mod:`.info`), encoding a split (:mod:`.encode`)."""
