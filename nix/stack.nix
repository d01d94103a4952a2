# `nix run .#stack -- up|down|status|logs`: scripts/stack, the one local stack, running
# Kafka and Cassandra from nixpkgs (AQUEDUCT_KAFKA_HOME, AQUEDUCT_CASSANDRA_HOME) instead
# of jars fetched with Maven; the same settings (stack/templates), ports and variables.
{
  lib,
  writeShellApplication,
  apacheKafka,
  cassandra,
  jdk11_headless,
  python3,
  coreutils,
  findutils,
  gawk,
  gnugrep,
  gnused,
  util-linux,
}:
let
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../scripts/stack
      ../scripts/stack-probe.py
      ../stack/templates
    ];
  };
in
writeShellApplication {
  name = "aqueduct-stack";
  runtimeInputs = [
    python3 # scripts/stack-probe.py
    coreutils
    findutils
    gawk
    gnugrep
    gnused
    util-linux # setsid
  ];
  text = ''
    export AQUEDUCT_KAFKA_HOME=${apacheKafka}
    export AQUEDUCT_KAFKA_JAVA_HOME=${apacheKafka.passthru.jre}
    export AQUEDUCT_CASSANDRA_HOME=${cassandra}
    # nixpkgs builds `cassandra` (4.1) for Java 11 (pkgs/top-level/all-packages.nix).
    export AQUEDUCT_CASSANDRA_JAVA_HOME=${cassandra.passthru.jre or jdk11_headless}
    # State under the caller's folder (the script's own is the read-only store), apart from
    # scripts/stack's .stack: Cassandra 4.1 cannot read the data files of 5.0.
    export AQUEDUCT_STACK_DIR=''${AQUEDUCT_STACK_DIR:-$PWD/.stack-nix}
    exec ${src}/scripts/stack "$@"
  '';
}
