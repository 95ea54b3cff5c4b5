#!/usr/bin/env bash
# Remakes the images signed by the real Apptainer (1.4.5, test-cluster/setup --apptainer)
# that tests/sif_signatures.rs checks: the corpus's one-group.sif (its *System squashfs is
# object 2) signed with a fresh `apptainer key newpair` key (PGP) and with fresh PEM keys
# (DSSE: Ed25519, ECDSA P-256, RSA 2048). Only the public keys are kept.
# Run from the repository root as root: tests/data/sif/apptainer/make.sh
set -euo pipefail
here=tests/data/sif/apptainer
A=test-cluster/apptainer
work=$(mktemp -d /tmp/berth-sign.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/home"
$A --env HOME="$work/home" key newpair --name "Berth Test" --email test@example.org \
	--comment fixture --password "" --push=false
echo 0 | $A --env HOME="$work/home" key export --armor "$work/pgp.asc"
cp "$work/pgp.asc" "$here/pgp-public.asc"
cp tests/data/sif/one-group.sif "$here/signed-pgp.sif"
$A --env HOME="$work/home" sign "$here/signed-pgp.sif"
for k in ed25519 ecdsa rsa; do
	case $k in
	ed25519) openssl genpkey -algorithm ed25519 -out "$work/$k.pem" ;;
	ecdsa) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/$k.pem" ;;
	rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/$k.pem" ;;
	esac
	openssl pkey -in "$work/$k.pem" -pubout -out "$here/$k-public.pem"
	cp tests/data/sif/one-group.sif "$here/signed-$k.sif"
	$A sign --key "$work/$k.pem" "$here/signed-$k.sif"
	$A verify --key "$here/$k-public.pem" "$here/signed-$k.sif"
done
$A --env HOME="$work/home" verify "$here/signed-pgp.sif"
