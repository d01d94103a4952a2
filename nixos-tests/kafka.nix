# One Kafka node as broker and KRaft controller, storage formatted on first start, shared by
# the VM tests. Its settings are stack/templates/server.properties (scripts/stack's), but
# those saying where the node listens and keeps its data, which are the VM's here, with a
# static quorum (`controller.quorum.voters`), as nixpkgs' module formats storage without
# `--standalone` (nixos/tests/kafka/base.nix does the same).
# `host`: the address clients and the controller quorum use; `bind`: the listeners' address
# ("" for every interface).
{
  host,
  bind ? host,
}:
{ lib, ... }:
let
  template = ../stack/templates/server.properties;
  nodeKeys = [
    "listeners"
    "advertised.listeners"
    "listener.security.protocol.map"
    "controller.quorum.bootstrap.servers"
    "controller.quorum.voters"
    "log.dirs"
  ];
  pairs = map (line: builtins.match "([^=]+)=(.*)" line) (
    lib.filter (line: line != "" && !lib.hasPrefix "#" line) (
      lib.splitString "\n" (builtins.readFile template)
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
      "controller.quorum.voters" = [ "1@${host}:9093" ];
      "log.dirs" = [ "/var/lib/apache-kafka" ];
    };
  };
}
