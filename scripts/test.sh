#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need, then runs
# every test. This is the command the README gives and the one CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# --- what the tests need beyond Rust -------------------------------------------------------
# psql (client tests), PostgreSQL server binaries (differential tests, benchmarks).
need=()
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
# pgjdbc for the Java client test (run with the machine's Java 17).
[ -f /usr/share/java/postgresql.jar ] || need+=(libpostgresql-jdbc-java)
# openssl makes the certificates of the TLS test.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The sqlite3 shell opens a backup in the backup test.
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
# iproute2 (ip) makes the network namespaces of the three-host test.
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  echo "test.sh: installing ${need[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Python client tests (SQLAlchemy 2 with psycopg2, Alembic, asyncpg, psycopg 3): a virtualenv
# under target/, with pinned versions, made once and reused.
make_venv() {
  if ! python3 -m venv "$1" >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$1"
  fi
}
venv=target/test-venv
if ! "$venv/bin/python" -c "import sqlalchemy, psycopg2, alembic, asyncpg, psycopg, optuna, prometheus_client" >/dev/null 2>&1; then
  echo "test.sh: creating $venv with SQLAlchemy, psycopg2, Alembic, asyncpg, psycopg 3, Optuna and prometheus-client"
  make_venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    "sqlalchemy==2.1.9" "psycopg2-binary==2.9.13" "alembic==1.20.1" \
    "asyncpg==0.32.0" "psycopg[binary]==3.3.9" "optuna==5.1.0" "prometheus-client==0.26.0"
fi
export SQLKEEPER_TEST_PYTHON="$PWD/$venv/bin/python"
# Applications whose pins clash with the test virtualenv's SQLAlchemy get one each, made from
# their frozen requirements: Optuna 2.10 (whose schema the Optuna test upgrades; SQLAlchemy 1.4)
# and MLflow 2.22 (SQLAlchemy 2.0).
app_venv() { # name requirements-file
  local dir="target/test-venv-$1"
  if ! cmp -s "$2" "$dir/requirements.txt"; then
    echo "test.sh: creating $dir from $2"
    rm -rf "$dir"
    make_venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check -r "$2"
    cp "$2" "$dir/requirements.txt"
  fi
}
app_venv optuna2 tests/clients/optuna2-requirements.txt
app_venv mlflow tests/clients/mlflow-requirements.txt
export SQLKEEPER_TEST_OPTUNA2_PYTHON="$PWD/target/test-venv-optuna2/bin/python"
export SQLKEEPER_TEST_MLFLOW_PYTHON="$PWD/target/test-venv-mlflow/bin/python"

# Node client tests (node-postgres, knex): the packages pinned by tests/clients/package-lock.json,
# installed under target/ with `npm ci`, once per lockfile.
node_dir=target/test-node
if ! cmp -s tests/clients/package-lock.json "$node_dir/package-lock.json" \
  || [ ! -d "$node_dir/node_modules/knex" ]; then
  echo "test.sh: installing node-postgres and knex in $node_dir"
  rm -rf "$node_dir" && mkdir -p "$node_dir"
  cp tests/clients/package.json tests/clients/package-lock.json "$node_dir/"
  (cd "$node_dir" && npm ci --no-audit --no-fund --silent)
fi
export SQLKEEPER_TEST_NODE_MODULES="$PWD/$node_dir/node_modules"

# --- habits: formatting and lints are part of the suite ----------------------------------
# rustfmt and clippy come with rustup's default profile; a minimal toolchain gets them here.
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    echo "test.sh: adding the $component component"
    rustup component add "$component"
  fi
done
cargo fmt --all -- --check
# Workspace lints live in Cargo.toml ([workspace.lints]); warnings are errors here.
cargo clippy --workspace --all-targets -j 2 -- -D warnings

# --- the tests -------------------------------------------------------------------------------
# Two cores: two build jobs, and test threads as cargo decides.
cargo test --workspace --all-targets -j 2
