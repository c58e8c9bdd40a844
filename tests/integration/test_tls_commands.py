"""`tls init/issue/show` on a real data dir: files, modes, refusals, and certificates that verify."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from hivemind_tui.core import tls
from hivemind_tui.core.tls_names import worker_name
from tests.integration.cli_harness import CLI


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def signed_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    cert, ca = x509.load_pem_x509_certificate(cert_pem), x509.load_pem_x509_certificate(ca_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError):
        return False
    return True


def test_init_issue_show(tmp_path: Path) -> None:
    cli = CLI(tmp_path / "data")
    made = cli.json("tls", "init", "--host", "pool.lan", "--host", "192.0.2.1")
    folder = tmp_path / "data" / "tls"
    assert mode(folder) == 0o700
    for key in ("ca-key.pem", "pool-key.pem", "client-key.pem"):
        assert mode(folder / key) == 0o600, key
    pool = tls.info(folder / "pool.pem")
    assert {"pool.lan", "192.0.2.1"} <= set(pool.names) and not pool.is_ca
    assert signed_by((folder / "pool.pem").read_bytes(), (folder / "ca.pem").read_bytes())
    assert made["ca_sha256"] == tls.fingerprint((folder / "ca.pem").read_bytes())

    again = cli("tls", "init")
    assert again.returncode == 2 and "--force" in again.stderr
    assert tls.fingerprint((folder / "ca.pem").read_bytes()) == made["ca_sha256"]  # untouched
    forced = cli.json("tls", "init", "--force")
    assert forced["ca_sha256"] != made["ca_sha256"]

    issued = cli.json("tls", "issue", "node-7", "--output", str(tmp_path / "bundle"))
    bundle = tmp_path / "bundle"
    assert mode(bundle / "key.pem") == 0o600
    assert signed_by((bundle / "cert.pem").read_bytes(), (folder / "ca.pem").read_bytes())
    assert worker_name("node-7") in tls.info(bundle / "cert.pem").names
    assert issued["sha256"] == tls.fingerprint((bundle / "cert.pem").read_bytes())

    shown = cli.json("tls", "show")["certificates"]
    assert {Path(c["file"]).name for c in shown} == {"ca.pem", "pool.pem", "client.pem"}
    assert all(c["state"] == "ok" for c in shown) and not any("key" in c["file"] for c in shown)
    assert "-----BEGIN" not in cli("tls", "show").stdout


def test_a_worker_csr_keeps_the_key_on_the_worker() -> None:
    ca_pem, ca_key = tls.make_ca()
    key, _ = tls.new_key()
    request = tls.csr(key, "w1")
    cert = tls.sign(ca_pem, ca_key, tls.csr_public_key(request), "w1", [worker_name("w1")])
    public = x509.load_pem_x509_certificate(cert).public_key()
    assert (
        isinstance(public, ec.EllipticCurvePublicKey) and public.public_numbers() == key.public_key().public_numbers()
    )
    assert signed_by(cert, ca_pem)
