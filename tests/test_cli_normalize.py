import itertools

import orjson
from click.testing import CliRunner

from streams.cli import main

from .helpers import FIXTURES


def _invoke(*args: str, input: bytes | None = None):
    result = CliRunner().invoke(main, ["normalize", *args], input=input)
    out = [orjson.loads(line) for line in result.stdout.splitlines() if line.strip()]
    err = [orjson.loads(line) for line in result.stderr.splitlines() if line.strip()]
    return result.exit_code, out, err


def test_file_to_json_lines_with_avro_field_names() -> None:
    code, out, err = _invoke(
        "--source", "ocpi", "--record-time", "2026-03-01T12:00:00Z", str(FIXTURES / "ocpi_location_messy.json")
    )
    assert code == 0
    assert len(out) == 5
    first = out[0]
    assert first["connectorUid"] == "ocpi:NL:PLG:E1#1" and first["status"] == "CHARGING"
    assert first["eventTime"] == "2026-03-01T09:29:00.000Z"
    assert first["recordTime"] == "2026-03-01T12:00:00.000Z"
    assert {"evseUid", "rawStatus", "maxPowerKw", "eventTimeSource", "live"} <= set(first)
    assert err == [{"index": 0, "kind": "unknown_status", "message": err[0]["message"], "path": "data[0].evses[3]"}]


def test_stdin_json_lines_and_per_document_errors() -> None:
    body = (
        b'{"_id":"c1","chargestation":"s1","status":"Available","updatedAt":"2026-03-01T10:00:00Z"}\n'
        b"garbage\n"
        b'{"status":"Available"}\n'
    )
    code, out, err = _invoke("-s", "edrv", "--record-time", "1772366400000", "-", input=body)
    assert code == 0
    assert [r["connectorUid"] for r in out] == ["edrv:c1"]
    assert [(e["index"], e["kind"]) for e in err] == [(1, "malformed_json"), (2, "missing_id")]


def test_json_array_of_documents() -> None:
    body = orjson.dumps([{"ID": 1, "Connections": [{"ID": 2, "StatusTypeID": 20}]}, {"ID": 3}])
    code, out, _err = _invoke("-s", "ocm", "-", input=body)
    assert code == 0 and [r["status"] for r in out] == ["CHARGING"]


def test_pretty_printed_broken_document_is_one_error() -> None:
    code, out, err = _invoke("-s", "ocpi", "-", input=b'{\n  "uid": "1",\n  "status": \n}\n')
    assert code == 0 and out == [] and [e["kind"] for e in err] == ["malformed_json"]


def test_unknown_source_lists_valid_names() -> None:
    result = CliRunner().invoke(main, ["normalize", "--source", "tesla", "-"], input=b"{}")
    assert result.exit_code == 2
    assert "valid sources: edrv, here, ocm, ocpi" in result.output


def test_unreadable_file_is_an_error() -> None:
    result = CliRunner().invoke(main, ["normalize", "--source", "ocpi", "/nonexistent.json"])
    assert result.exit_code == 2


def test_stats_summary() -> None:
    _code, _out, err = _invoke("-s", "here", "--stats", str(FIXTURES / "here_stations.json"))
    assert err[-1]["summary"] == {"documents": 1, "records": 8, "rejected": 1, "skipped": 0}


def test_fast_writer_output_is_exactly_the_avro_json_form() -> None:
    """The JSON Lines writer (orjson, memoized times) gives what the generic Avro → JSON
    conversion gives, field by field, for every fixture record."""
    from streams.avro import to_jsonable

    from .helpers import run_fixture, run_records

    outcomes = [
        run_fixture("ocpi", "ocpi_location_messy.json"),
        run_fixture("ocm", "ocm_pois.json"),
        run_fixture("here", "here_stations.json"),
        run_fixture("edrv", "edrv_objects.jsonl"),
        run_records("ocpp", "ocpp_status_notifications.jsonl"),
    ]
    import io

    from streams.batch import RecordWriter

    for outcome in outcomes:
        buffer = io.BytesIO()
        writer = RecordWriter(buffer)
        records = list(outcome.records.values())
        for record in records:
            writer.write(dict(record.__dict__))  # the writer takes (and rewrites) a field dict
        writer.flush()
        lines = [orjson.loads(line) for line in buffer.getvalue().splitlines()]
        assert lines == [to_jsonable(record.__dict__) for record in records]
        assert all(line["eventTime"].endswith("Z") and len(line["eventTime"]) == 24 for line in lines)


def test_key_and_headers_for_one_document() -> None:
    patch = b'{"status": "CHARGING", "last_updated": "2026-03-01T09:48:00Z"}'
    code, out, err = _invoke("-s", "ocpi", "--key", "/locations/NL/PLG/L1/E1", "-", input=patch)
    assert code == 0 and err == [] and [r["evseUid"] for r in out] == ["ocpi:NL:PLG:E1"]
    code, out, _ = _invoke(
        "-s", "ocpi", "--header", "ocpi-party-id=PLG", "--header", "ocpi-evse-uid=E2", "-", input=patch
    )
    assert [r["evseUid"] for r in out] == ["ocpi:PLG:E2"]
    frame = b'[2, "1", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}]'
    code, out, _ = _invoke("-s", "ocpp", "--key", "CP-7", "--record-time", "2026-03-01T12:00:00Z", "-", input=frame)
    assert [(r["connectorUid"], r["status"]) for r in out] == [("ocpp:CP-7:1#1", "CHARGING")]
    code, out, err = _invoke("-s", "ocpp", "-", input=frame)
    assert out == [] and [e["kind"] for e in err] == ["missing_id"]


def test_bad_header_option_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["normalize", "-s", "ocpi", "--header", "novalue", "-"], input=b"{}")
    assert result.exit_code == 2 and "NAME=VALUE" in result.output


def _locations(count: int) -> bytes:
    """JSON Lines of OCPI Locations, with an unreadable line and a bad EVSE now and then."""
    lines = []
    for i in range(count):
        if i % 97 == 13:
            lines.append(b'{"country_code": "NL", "evses": [')  # cut off
            continue
        evses = [
            {
                "uid": f"L{i}E{e}",
                "status": "FLYING" if (i + e) % 89 == 5 else ("AVAILABLE", "CHARGING", "OUTOFORDER")[(i + e) % 3],
                "last_updated": f"2026-03-01T{i % 24:02d}:{e:02d}:00Z",
                "connectors": [{"id": str(c), "standard": "IEC_62196_T2", "max_electric_power": 22000} for c in (1, 2)],
            }
            for e in range(1 + i % 3)
        ]
        lines.append(orjson.dumps({"country_code": "NL", "party_id": "BEN", "id": f"L{i}", "evses": evses}))
    return b"\n".join(lines) + b"\n"


def _normalize_raw(body: bytes, *options: str, path=None) -> tuple[bytes, bytes]:
    """stdout and stderr of ``normalize`` reading ``body`` from stdin, or from ``path`` (a
    regular file, which several processes read by offset)."""
    if path is not None:
        path.write_bytes(body)
    result = CliRunner().invoke(
        main,
        ["normalize", "-s", "ocpi", "--record-time", "2026-03-02T00:00:00Z", "--stats", *options, str(path or "-")],
        input=None if path else body,
    )
    assert result.exit_code == 0, result.output
    return result.stdout_bytes, result.stderr_bytes


def test_several_processes_write_what_one_writes(tmp_path) -> None:
    """``--workers``: the same records, rejections (with their input index) and summary, in the
    same order, byte for byte — JSON Lines read by offset from a file or from stdin, a JSON
    array, a file whose first line is unreadable (read whole), blank lines, CRLF and a BOM."""
    body = _locations(700)
    file = tmp_path / "in.jsonl"
    one = _normalize_raw(body, "--workers", "1")
    assert one[0].count(b"\n") > 1500 and b'"kind":"unknown_status"' in one[1] and b'"malformed_json"' in one[1]
    assert orjson.loads(one[1].splitlines()[-1])["summary"]["documents"] == 700
    assert _normalize_raw(body, "--workers", "1", path=file) == one
    for workers in ("2", "3", "8"):
        assert _normalize_raw(body, "--workers", workers, path=file) == one
    messy = b"\xef\xbb\xbf" + body.replace(b"\n", b"\r\n\n  \n", 50)
    assert _normalize_raw(messy, "--workers", "3", path=file) == one
    garbage_first = b"not json\n" + body
    expected = _normalize_raw(garbage_first, "--workers", "1")
    assert b'"index":0,"kind":"malformed_json"' in expected[1]
    assert _normalize_raw(garbage_first, "--workers", "3", path=file) == expected
    array = b"[" + b",".join(line for line in body.splitlines() if line.endswith(b"}")) + b"]"
    assert _normalize_raw(array, "--workers", "3", path=file) == _normalize_raw(array, "--workers", "1")


def test_several_processes_to_a_real_file_and_a_pipe(tmp_path) -> None:
    """The children's output reaches a real stdout (a file, a pipe) through the kernel
    (``os.sendfile``), after what the parent wrote and in order: the bytes one process writes."""
    import subprocess
    import sys

    source = tmp_path / "in.jsonl"
    source.write_bytes(_locations(700))
    command = [sys.executable, "-m", "streams.cli", "normalize", "-s", "ocpi", "--record-time", "2026-03-02T00:00:00Z"]
    one = subprocess.run([*command, "--workers", "1", str(source)], capture_output=True, check=True)
    assert one.stdout.count(b"\n") > 1500
    piped = subprocess.run([*command, "--workers", "3", str(source)], capture_output=True, check=True)
    assert (piped.stdout, piped.stderr) == (one.stdout, one.stderr)
    target = tmp_path / "out.jsonl"
    with target.open("wb") as out:
        out.write(b"kept\n")  # the shell's ``>>``: what is there already stays first
        out.flush()
        subprocess.run([*command, "--workers", "3", str(source)], stdout=out, check=True, capture_output=False)
    assert target.read_bytes() == b"kept\n" + one.stdout


def test_a_failed_worker_process_loses_nothing(monkeypatch, tmp_path) -> None:
    """A child that dies before finishing its slice has the slice redone by the parent."""
    import io
    import os
    from datetime import UTC, datetime, timedelta

    from streams import batch

    job = batch.Job("ocpi", datetime(2026, 3, 2, tzinfo=UTC), timedelta(minutes=5), 1 << 20, 1000)
    path = tmp_path / "locations.jsonl"
    path.write_bytes(_locations(300))

    def run(workers: int) -> tuple[bytes, bytes, batch.Tally]:
        out, err = io.BytesIO(), io.BytesIO()
        with path.open("rb") as file:
            source = batch.read_input(file, 1 << 20)
            assert isinstance(source, batch.Lines) and source.fd is not None  # read by offset
            tally = batch.normalize_input(job, source, out, err, workers=workers)
        return out.getvalue(), err.getvalue(), tally

    expected = run(1)
    monkeypatch.setattr(batch._ChildSlice, "_run", lambda *_: os._exit(3))
    assert run(3) == expected


def test_big_inputs_use_every_cpu_small_ones_one_process() -> None:
    from streams import batch

    small = batch.split_documents(_locations(50), 1 << 20)
    assert batch.worker_count(None, small) == 1
    assert batch.worker_count(4, small, 10_000) == 4
    big = batch.Documents([b"{}"] * 5000, True)
    assert batch.worker_count(None, big, 2 << 20) == min(batch.available_cpus(), 8)
    assert batch.worker_count(None, batch.Lines(stream=iter([b"{}"]))) == 1  # stdin from a pipe
    array = batch.split_documents(b"[" + b",".join([b'{"id": "' + b"x" * 300 + b'"}'] * 4000) + b"]", 1 << 20)
    assert array.size > 1 << 20 and batch.worker_count(None, array) == min(batch.available_cpus(), 8)
    bounds = batch.slice_bounds(big, 3)
    assert bounds[0][0] == 0 and bounds[-1][1] == 5000 and all(a[1] == b[0] for a, b in itertools.pairwise(bounds))


def test_normalize_command_starts_without_pydantic(tmp_path) -> None:
    """``plugstream normalize`` writes plain field dicts: importing pydantic would add about
    0.1 s to every run (issue 13's whole-process figure), so it must not happen."""
    import subprocess
    import sys

    path = tmp_path / "one.json"
    path.write_bytes((FIXTURES / "ocpi_location_messy.json").read_bytes())
    program = (
        "import sys\n"
        "from streams.cli import main\n"
        "try:\n"
        "    main(['normalize', '--source', 'ocpi', sys.argv[1]])\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0, done.code\n"
        "print('pydantic' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", program, str(path)], capture_output=True, check=True)
    assert done.stdout.count(b"\n") > 3
    assert done.stderr.splitlines()[-1] == b"False"
