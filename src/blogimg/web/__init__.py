"""The status page: server-rendered views (Jinja), htmx fragments and vendored static files.

No build step: ``templates/`` holds a page per view and ``partials/`` the fragments htmx fetches
again when ``static/live.js`` reports a change; ``static/vendor/`` holds pinned third-party files
(tools/vendor_frontend.py). Each view is a router: overview (``/``), gallery, posts_page, and the
image and failure pages.
"""
