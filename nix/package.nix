# The aqueduct package: `nix build`, `nix run . -- pipelines/users.toml`.
{
  lib,
  rustPlatform,
  pkg-config,
  cmake,
  openssl,
  zlib,
  zstd,
  curl,
  rdkafka,
}:
let
  cargoToml = builtins.fromTOML (builtins.readFile ../Cargo.toml);
  lockedCrates = (builtins.fromTOML (builtins.readFile ../Cargo.lock)).package;

  # rdkafka-sys "4.10.0+2.12.1" bundles librdkafka 2.12.1. Linked dynamically (our
  # `dynamic-rdkafka` feature) its build.rs asks pkg-config for at least that version and
  # fails otherwise, so nixpkgs' librdkafka is used only when it is new enough; else the
  # bundled copy is built with cmake (rdkafka's `cmake-build` feature, always on).
  rdkafkaSys = builtins.head (builtins.filter (p: p.name == "rdkafka-sys") lockedCrates);
  bundledLibrdkafka = builtins.elemAt (builtins.match "[^+]*[+](.*)" rdkafkaSys.version) 0;
  useSystemRdkafka = lib.versionAtLeast rdkafka.version bundledLibrdkafka;
  # Named by package: the build selects the whole workspace (`--workspace`).
  cargoFeatures = lib.optional useSystemRdkafka "aqueduct/dynamic-rdkafka";
in
rustPlatform.buildRustPackage {
  pname = cargoToml.package.name;
  inherit (cargoToml.package) version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../standin
      ../tests
      ../pipelines
      # Cargo.toml's [[bench]] targets must exist for cargo to load the manifest.
      (lib.fileset.maybeMissing ../benches)
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  buildFeatures = cargoFeatures;
  # Both binaries: aqueduct and the stand-in API (the VM tests and the demo run it), a crate of
  # the workspace of its own.
  cargoBuildFlags = [ "--workspace" ];
  cargoTestFlags = [ "--workspace" ];
  # As nixpkgs builds other rdkafka users (pkgs/by-name/ve/vector/package.nix): the
  # system librdkafka through pkg-config. The bundled fallback needs cmake and the
  # headers librdkafka's CMake build looks for.
  nativeBuildInputs = [ pkg-config ] ++ lib.optional (!useSystemRdkafka) cmake;
  buildInputs = [
    openssl
    zlib
  ]
  ++ (
    if useSystemRdkafka then
      [ rdkafka ]
    else
      [
        zstd
        curl
      ]
  );

  # Unit and `cli` tests run here. The Kafka/Cassandra integration tests are skipped (opted
  # out: without it they fail for want of servers; the VM tests cover them): point them at
  # closed ports, so a server on the builder (no sandbox) is never used, and make sure
  # CI=true cannot turn skips into failures.
  env = {
    AQUEDUCT_TEST_KAFKA = "127.0.0.1:1";
    AQUEDUCT_TEST_CASSANDRA = "127.0.0.1:1";
    AQUEDUCT_SKIP_SERVER_TESTS = "1";
  };
  preCheck = ''
    unset CI
  '';
  # tests/it/docs.rs compares docs/ (the book, the generated references) and README.md with
  # the code and the NixOS module; neither is in `src`.
  checkFlags = [ "--skip=docs::" ];
  # The stand-in API tests listen on 127.0.0.1.
  __darwinAllowLocalNetworking = true;

  # The example pipelines, so `specFile = "${aqueduct}/share/aqueduct/pipelines/users.toml"`
  # finds its schema beside it.
  postInstall = ''
    mkdir -p $out/share/aqueduct
    cp -r pipelines $out/share/aqueduct/
  '';

  # The clippy check builds with the same features.
  passthru = { inherit cargoFeatures; };

  meta = {
    inherit (cargoToml.package) description;
    license = lib.licenses.asl20;
    mainProgram = "aqueduct";
    platforms = lib.platforms.linux ++ lib.platforms.darwin;
  };
}
