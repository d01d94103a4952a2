# A Kafka node as broker and KRaft controller, storage formatted on first start, shared by
# the VM tests: the one node of single-node.nix, or one of cluster.nix's three. Its settings
# are stack/templates/server.properties (scripts/stack's), but those saying where the node
# listens and keeps its data, which are the VM's here, with a static quorum
# (`controller.quorum.voters`), as nixpkgs' module formats storage without `--standalone`
# (nixos/tests/kafka/base.nix does the same). As in `scripts/stack up --cluster`, the internal
# topics have a replica on every controller (three in a cluster), two needed for a write.
# `host`: the address clients and the controller quorum use; `bind`: the listeners' address
# ("" for every interface); `nodeId`, `voters`: this node in the quorum, and the quorum.
{
  host,
  bind ? host,
  nodeId ? 1,
  voters ? [ "${toString nodeId}@${host}:9093" ],
}:
{ lib, ... }:
let
  template = ../stack/templates/server.properties;
  replicas = lib.length voters;
  text =
    builtins.replaceStrings
      [ "@REPLICAS@" "@MIN_ISR@" ]
      [
        (toString replicas)
        (if replicas > 1 then "2" else "1")
      ]
      (builtins.readFile template);
  nodeKeys = [
    "node.id"
    "listeners"
    "advertised.listeners"
    "listener.security.protocol.map"
    "controller.quorum.bootstrap.servers"
    "controller.quorum.voters"
    "log.dirs"
  ];
  # Lines that are not `key=value` are placeholders for whole lines (the quorum), set below.
  pairs = lib.filter (p: p != null) (
    map (line: builtins.match "([^=]+)=(.*)" line) (
      lib.filter (line: line != "" && !lib.hasPrefix "#" line) (lib.splitString "\n" text)
    )
  );
  # A placeholder left in a setting taken from the template means a node setting is missing
  # from `nodeKeys`.
  shared =
    lib.mapAttrs
      (
        key: value:
        lib.throwIf (lib.hasInfix "@" value) "${template}: `${key}` holds a placeholder: add it to nodeKeys"
          value
      )
      (
        removeAttrs (lib.listToAttrs (
          map (p: lib.nameValuePair (lib.elemAt p 0) (lib.elemAt p 1)) pairs
        )) nodeKeys
      );
in
{
  services.apache-kafka = {
    enable = true;
    clusterId = "ak2fIHr4S8WWarOF_ODD0g"; # any `kafka-storage.sh random-uuid`
    formatLogDirs = true;
    jvmOptions = [
      "-Xms512m"
      "-Xmx512m"
    ];
    settings = shared // {
      listeners = [
        "PLAINTEXT://${bind}:9092"
        "CONTROLLER://${bind}:9093"
      ];
      "advertised.listeners" = [ "PLAINTEXT://${host}:9092" ];
      "listener.security.protocol.map" = [
        "PLAINTEXT:PLAINTEXT"
        "CONTROLLER:PLAINTEXT"
      ];
      "node.id" = nodeId;
      "controller.quorum.voters" = voters;
      "log.dirs" = [ "/var/lib/apache-kafka" ];
    };
  };
}
