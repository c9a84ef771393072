"""trustee's ``sample`` TEE: no hardware and no signature, only the report data. It proves nothing; it exists for
protocol tests, and a KBS accepts it only when configured to."""

from __future__ import annotations

import base64
import json


class SampleAttester:
    """Evidence ``{"svn":"1","report_data":"<base64>"}``."""

    tee = "sample"

    def evidence(self, report_data: bytes) -> bytes:
        return json.dumps({"svn": "1", "report_data": base64.b64encode(report_data).decode()}).encode()
