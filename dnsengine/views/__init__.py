"""The pages and JSON endpoints of dnsengine, one module per area.

- `blocklists`: the blocklists page, the domain test box, toggling and uploading lists.
- `domains`: the one-click "allow/block this domain" actions.
- `pause`: the pause/resume buttons and /api/pause, /api/resume.
- `clients`: the clients page and its one-click rename and move.
- `groups`: the groups page and one group's page, with their changes.
- `forwarding`: the conditional-forwarding rules page and its changes.
- `status`: the engine status page and /api/status.

Views parse the request, call a service (`dnsengine.services`) or a selector,
and render; who may do what is `gloryhole_site.auth`.
"""
