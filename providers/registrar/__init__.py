"""Registrar APIs that set a domain's DS at its registry (``[zones.parent] type =
"route53domains"``; docs/providers/route53domains.md).

    route53domains.py   Amazon Route 53 Domains through boto3: the DS records the registrar
                        holds for a domain, associate/disassociate, and the operations'
                        outcome
"""

from providers.registrar.route53domains import (
    UNKNOWN,
    Operation,
    OperationInProgress,
    RegistrarDs,
    Route53Domains,
    make_client,
)

__all__ = ["UNKNOWN", "Operation", "OperationInProgress", "RegistrarDs", "Route53Domains",
           "make_client"]
