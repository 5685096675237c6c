"""Apps that ship with the transceiver: ``--app echo`` (the default), ``speak``, ``record``.

Each module's ``create_app()`` is the factory ``--app`` calls; see transceiver/app.py.
"""
