"""The web console (`mlpipe console`): Flask + Jinja, inline SVG plots, vendored static files."""
