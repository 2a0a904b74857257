"""``type = "desec"``: deSEC (desec.io) through its REST API (docs/providers/desec.md)."""
