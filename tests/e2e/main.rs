//! End-to-end: a real `paasd` on ephemeral ports with its own data folder, the real `paas`
//! CLI, real containers, real HTTP through the router. Needs root, like `paasd`, and the
//! workspace binaries built (`cargo build --workspace`), which the test command does.

mod api_spec;
mod browser;
mod buildpacks;
mod cells;
mod chaos;
mod cluster;
mod conformance;
mod console;
mod disk;
mod escape;
mod etcd;
mod harness;
mod manifest;
mod outbound;
mod processes;
mod push;
mod refusals;
mod releases;
mod restart;
mod rollouts;
mod route_services;
mod routes;
mod rules;
mod services;
mod stacks;
mod supervision;
mod tasks;
mod teams;
mod terminal;
