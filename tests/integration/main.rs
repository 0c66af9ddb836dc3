//! Integration tests: a real server on 127.0.0.1:0, real clients (tokio-postgres, psql), real
//! files, and real processes for crash tests. One test binary, so linking happens once.

mod anomalies;
mod apps;
mod auth;
mod backup;
mod cli;
mod client_bytes;
mod clients;
mod cluster;
mod convergence;
mod crash;
mod differential;
mod expressions;
mod metrics;
mod nemesis;
mod netns;
mod peers;
mod poison;
mod privileges;
mod psql;
mod rust_clients;
mod single_node;
mod support;
mod tls;
mod transactions;
mod types;
