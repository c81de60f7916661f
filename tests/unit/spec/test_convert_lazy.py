"""The 0.1.0/0.2.0 result codec is loaded only when such a result is met."""

from __future__ import annotations

import subprocess
import sys

from kanal.spec import convert, result_020


def test_versions_of_the_lazy_codec_are_its_own() -> None:
    assert convert.V020 == result_020.VERSIONS


def test_wire_result_names_the_three_families() -> None:
    assert result_020.Result020 in convert.WireResult.__args__


def test_a_1x_result_does_not_load_the_020_codec() -> None:
    code = (
        "import sys\n"
        "from kanal.spec.convert import parse_result, render_result\n"
        'r = parse_result(b\'{"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}\')\n'
        "render_result(r, '0.4.0')\n"
        "assert 'kanal.spec.result_020' not in sys.modules\n"
        "render_result(r, '0.2.0')\n"
        "assert 'kanal.spec.result_020' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
