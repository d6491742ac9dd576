# The operator's image. Not built in this repository's environment (no container runtime
# and no registry access here), so it is unverified: build it with
#   docker build -t registry.example/marketplace-operator:0.1.0 .
# and the manifests in manifests/ run it with `args: ["run"]`.

FROM rust:1.95 AS builder
WORKDIR /src
# Only what the build reads (the operator embeds the sample manifests and a trace); no
# target/ or other local state.
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY crds crds
COPY operator operator
COPY devcluster devcluster
COPY manifests manifests
COPY traces traces
RUN cargo build --release --locked -p marketplace-operator \
    && cp target/release/marketplace-operator /marketplace-operator

# glibc and libgcc, no shell, user nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /marketplace-operator /usr/local/bin/marketplace-operator
USER nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/marketplace-operator"]
CMD ["run"]
