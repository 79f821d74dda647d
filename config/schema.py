from __future__ import annotations


def strip_trailing_slashes(result, generator, request, public):
    """Routes accept an optional trailing slash; document the canonical form without it."""
    result["paths"] = {
        (path.rstrip("/") if not path.endswith(("schema/", "docs/")) else path): item
        for path, item in result["paths"].items()
    }
    return result
