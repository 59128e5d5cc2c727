#!/usr/bin/env bash
# The system packages fashion_lab needs, from Debian's archive: the README's two commands and .ci/run call this.
#   bash scripts/system-packages.sh          what `fit` needs: real Fashion-MNIST (offline) and a font for K49's hiragana
#   bash scripts/system-packages.sh --tests  also what the tests need: PostgreSQL's server (tests/studies/test_study.py starts
#                                            a throwaway one), python3-venv, Chromium and its driver (the page's test)
# As root it runs apt-get itself; as another user through sudo. Where apt-get is missing it says what to do and
# exits 0, so the pip install and `fit` after it still run (fit downloads the data set and checks its md5).
set -euo pipefail

packages=(dataset-fashion-mnist fonts-ipafont-gothic python3-venv)
case "${1:-}" in
  "") ;;
  --tests) packages+=(postgresql chromium chromium-driver) ;;
  *) echo "error: unknown option '$1'. Fix: run it as 'bash scripts/system-packages.sh' or with --tests." >&2; exit 2 ;;
esac

if ! command -v apt-get >/dev/null; then
  echo "no apt-get here: install ${packages[*]} (or their equivalents) with your system's package manager;" \
    "without dataset-fashion-mnist, fit downloads Fashion-MNIST into data/ and checks its md5." >&2
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null; then
  as_root=(sudo)
else
  echo "error: installing ${packages[*]} needs root, and sudo is not installed. Fix: run this as root," \
    "or install sudo and give your user the right to use it." >&2
  exit 1
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all installed (${packages[*]})"
  exit 0
fi
echo "system packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq  # a fresh machine's package lists are empty
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "system packages: installed ${missing[*]}"
