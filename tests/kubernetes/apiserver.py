"""A real Kubernetes control plane on free loopback ports: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler (v1.20.2, built once by
deploy/kubernetes/build-apiserver.sh), with a throwaway PKI and a static admin token.

There is no kubelet: Pods are created by the controllers and bound by the scheduler, but stay
Pending unless a test patches their status, playing the kubelet's part."""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tingyu.cli.launcher import Platform, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "deploy" / "kubernetes" / "build-apiserver.sh"
CACHE = Path(os.environ.get("TINGYU_KUBE_CACHE", "/var/cache/tingyu/kube-1.20.2"))


@dataclass(frozen=True)
class ControlPlane:
    url: str
    token: str
    ca: Path
    kubeconfig: Path


def binaries() -> Path:
    """The cached binaries, built first when missing (about five minutes, once per machine)."""
    if not all((CACHE / b).exists() for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")):
        subprocess.run(["bash", str(BUILD)], check=True, env={**os.environ, "TINGYU_KUBE_CACHE": str(CACHE)})
    return CACHE


def pki(folder: Path) -> None:
    """A CA, the apiserver's serving certificate for 127.0.0.1, and the service-account key pair."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-subj", "/CN=tingyu-test-ca", "-days", "2")  # fmt: skip
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "apiserver.key",
            "-out", "apiserver.csr", "-subj", "/CN=kube-apiserver")  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "apiserver.crt", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    openssl("genrsa", "-out", "sa.key", "2048")
    openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")


def kubeconfig(path: Path, url: str, ca: Path, token: str) -> None:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: test\n  cluster:\n    server: {url}\n    certificate-authority: {ca}\n"
        f"users:\n- name: admin\n  user:\n    token: {token}\n"
        "contexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\n"
        "current-context: test\n"
    )


def ready(url: str, ca: Path, token: str) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    request = urllib.request.Request(f"{url}/readyz", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=2, context=context) as response:
        return bool(response.status == 200)


def start(platform: Platform, folder: Path) -> ControlPlane:
    """etcd, then the apiserver, then the controller-manager and the scheduler, each on free ports."""
    bin_dir = binaries()
    certs = folder / "pki"
    pki(certs)
    token = secrets.token_hex(16)
    (certs / "tokens.csv").write_text(f"{token},admin,admin,system:masters\n")
    etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
    platform.spawn(
        "etcd",
        ["etcd", "--data-dir", str(folder / "etcd"), "--name", "test",
         "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
         "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
         "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
         "--initial-cluster", f"test=http://127.0.0.1:{etcd_peer}",
         "--listen-metrics-urls", f"http://127.0.0.1:{free_port()}"],
    )  # fmt: skip
    url = f"https://127.0.0.1:{api_port}"
    platform.spawn(
        "apiserver",
        [str(bin_dir / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
         "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
         "--insecure-port=0", f"--cert-dir={certs}",
         f"--tls-cert-file={certs / 'apiserver.crt'}", f"--tls-private-key-file={certs / 'apiserver.key'}",
         f"--client-ca-file={certs / 'ca.crt'}", f"--token-auth-file={certs / 'tokens.csv'}",
         "--authorization-mode=RBAC", f"--service-account-key-file={certs / 'sa.pub'}",
         f"--service-account-signing-key-file={certs / 'sa.key'}",
         "--service-account-issuer=https://kubernetes.default.svc",
         "--service-cluster-ip-range=10.96.0.0/16", "--allow-privileged=true"],
    )  # fmt: skip
    ca = certs / "ca.crt"
    wait_until(lambda: ready(url, ca, token), 90, "kube-apiserver")
    config = folder / "kubeconfig"
    kubeconfig(config, url, ca, token)
    platform.spawn(
        "controller-manager",
        [str(bin_dir / "kube-controller-manager"), f"--kubeconfig={config}", "--bind-address=127.0.0.1",
         f"--secure-port={free_port()}", "--port=0", "--leader-elect=false",
         f"--service-account-private-key-file={certs / 'sa.key'}", f"--root-ca-file={ca}",
         "--controllers=*,-nodelifecycle", "--use-service-account-credentials=false"],
    )  # fmt: skip
    platform.spawn(
        "scheduler",
        [str(bin_dir / "kube-scheduler"), f"--kubeconfig={config}", "--bind-address=127.0.0.1",
         f"--secure-port={free_port()}", "--port=0", "--leader-elect=false"],
    )  # fmt: skip
    return ControlPlane(url=url, token=token, ca=ca, kubeconfig=config)
