"""ACME DNS-01 and dns-persist-01 across every signer of a zone: where the challenge
lives (``resolve``), writing it at every signer (``rrsets``, ``dns01``, ``persist``) and
waiting until every nameserver serves it (``propagation``). Pure decisions are in
orchestrator/decide/acme.py; the CLI is orchestrator/acme_commands.py."""
