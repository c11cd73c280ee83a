"""The local-cluster kit that the integration and chaos tests, bench/ and hack/dev.py share.

Importable as ``support`` because pytest puts ``tests/`` on ``sys.path`` (``pythonpath`` in
pyproject.toml) and the scripts insert it themselves. Only ``fixtures`` and ``chart`` import
pytest; the rest is the standard library, so a script run by the system Python can use it.
"""
