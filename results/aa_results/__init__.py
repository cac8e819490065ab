"""Tools on finished runs: ``aa sweep``, ``aa compare``, ``aa report``, ``aa predict``, ``aa export``.

They read and make run folders through ``aa_core.runs`` alone, the core's surface for tools.
"""
