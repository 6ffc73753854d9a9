"""The browser consoles: the agency Live Manager (``/console``) and the creator's page
(``/creator``), plain HTML, ES modules and CSS served by the hub itself (no build step)."""
