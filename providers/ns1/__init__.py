"""``type = "ns1"``: NS1 (IBM NS1 Connect) through its REST API (docs/providers/ns1.md)."""
