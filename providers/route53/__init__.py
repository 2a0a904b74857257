"""``type = "route53"``: Amazon Route 53 hosted zones (docs/providers/route53.md)."""
