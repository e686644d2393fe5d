"""What the operator, the gateway and the encoder agree on, in one place that imports none of them.

- :mod:`sam_contract.api`: the SamModel API's group, version, plural and kind;
- :mod:`sam_contract.labels`: the label keys and values of encoder pods, and the managed-by selector;
- :mod:`sam_contract.cvat`: the shape of ``status.cvat`` (the operator writes it, the gateway reads it);
- :mod:`sam_contract.encoding`: the one base64 rule for CVAT's ``image`` field;
- :mod:`sam_contract.models`: the model families and their variants;
- :mod:`sam_contract.logs`: the log line format of every process.

Depends on the standard library and pydantic only (docs/architecture.md, "Map of the house").
"""
