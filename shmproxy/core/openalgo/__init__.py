"""An existing OpenAlgo install, read in place: its API keys and its broker sessions.

When the settings hold OpenAlgo's ``DATABASE_URL`` and ``API_KEY_PEPPER`` (its ``.env`` does), serve
accepts the API keys OpenAlgo issued and adapters take the broker session OpenAlgo's daily login
stored, with nothing copied by hand. :mod:`.location` finds the database file, :mod:`.crypto` holds
OpenAlgo's hashing and encryption contract (the optional ``shmproxy[openalgo]`` extra),
:mod:`.database` reads the file read-only and :mod:`.keys` verifies keys without blocking serve.
"""
