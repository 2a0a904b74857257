"""``type = "cloudflare"``: Cloudflare DNS through its v4 REST API
(docs/providers/cloudflare.md)."""
