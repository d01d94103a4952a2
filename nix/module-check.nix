# Evaluates services.aqueduct in a small NixOS system with three pipelines: one from
# `specFile` (with an environment file, environment and extra arguments), one from
# `settings`, one disabled. Evaluation fails, naming each broken setting, when a rendered
# unit is not what the module promises: ExecStart, EnvironmentFile, LoadCredential, the hardening, the
# `system.checks` entry per enabled pipeline. No build or VM: `nix flake check --no-build`
# proves it.
{
  nixpkgs,
  module,
  aqueduct,
  pkgs,
}:
let
  inherit (nixpkgs) lib;
  users = "${aqueduct}/share/aqueduct/pipelines/users.toml";

  systemWith =
    pipelines:
    lib.nixosSystem {
      inherit (pkgs.stdenv.hostPlatform) system;
      modules = [
        module
        {
          boot.loader.grub.enable = false;
          fileSystems."/" = {
            device = "none";
            fsType = "tmpfs";
          };
          system.stateVersion = "26.05";
          services.aqueduct = {
            package = aqueduct;
            inherit pipelines;
          };
        }
      ];
    };

  inherit
    (systemWith {
      users = {
        specFile = users;
        environmentFile = "/run/secrets/aqueduct-users.env";
        credentials.cassandra-password = "/run/secrets/cassandra-password";
        environment.AQUEDUCT_LOG = "debug";
        extraArgs = [
          "--only"
          "load"
        ];
      };
      earthquakes.settings = lib.importTOML ../pipelines/earthquakes.toml;
      off = {
        enable = false;
        specFile = users;
      };
    })
    config
    ;

  # The unit file as systemd reads it, one line per `Key=value`.
  unitLines = name: lib.splitString "\n" config.systemd.units."aqueduct-${name}.service".text;
  has = name: line: lib.elem line (unitLines name);
  linesOf = name: key: lib.filter (lib.hasPrefix "${key}=") (unitLines name);

  hardening = [
    "CapabilityBoundingSet="
    "DynamicUser=true"
    "LockPersonality=true"
    "MemoryDenyWriteExecute=true"
    "NoNewPrivileges=true"
    "PrivateDevices=true"
    "PrivateTmp=true"
    "PrivateUsers=true"
    "ProtectHome=true"
    "ProtectKernelTunables=true"
    "ProtectProc=invisible"
    "ProtectSystem=strict"
    "RestrictAddressFamilies=AF_INET"
    "RestrictAddressFamilies=AF_INET6"
    "RestrictAddressFamilies=AF_UNIX"
    "RestrictAddressFamilies=AF_NETLINK"
    "RestrictNamespaces=true"
    "SystemCallArchitectures=native"
    "SystemCallFilter=@system-service"
    "SystemCallFilter=~@privileged"
    "SystemCallFilter=~@resources"
    "UMask=0077"
    "Restart=on-failure"
    "RestartPreventExitStatus=2"
  ];
  aqueductChecks = lib.filter (lib.hasPrefix "aqueduct-") (map (d: d.name) config.system.checks);

  # [ { ok; what } ]: every expectation, with what it means when it fails.
  expectations =
    lib.concatMap
      (
        name:
        map (line: {
          ok = has name line;
          what = "aqueduct-${name}.service lacks `${line}`";
        }) hardening
      )
      [
        "users"
        "earthquakes"
      ]
    ++ [
      {
        ok = linesOf "users" "ExecStart" == [ "ExecStart=${lib.getExe aqueduct} run --only load ${users}" ];
        what = "aqueduct-users.service runs ${toString (linesOf "users" "ExecStart")}, not the spec file with its extra arguments";
      }
      {
        ok =
          let
            line = lib.concatStrings (linesOf "earthquakes" "ExecStart");
          in
          lib.hasPrefix "ExecStart=${lib.getExe aqueduct} run /nix/store/" line
          && lib.hasSuffix "-earthquakes.toml" line
          && lib.length (linesOf "earthquakes" "ExecStart") == 1;
        what = "aqueduct-earthquakes.service runs ${toString (linesOf "earthquakes" "ExecStart")}, not the spec rendered from `settings`";
      }
      {
        ok = linesOf "users" "EnvironmentFile" == [ "EnvironmentFile=/run/secrets/aqueduct-users.env" ];
        what = "aqueduct-users.service reads ${toString (linesOf "users" "EnvironmentFile")}, not its environmentFile";
      }
      {
        ok =
          linesOf "users" "LoadCredential" == [
            "LoadCredential=cassandra-password:/run/secrets/cassandra-password"
          ];
        what = "aqueduct-users.service loads ${toString (linesOf "users" "LoadCredential")}, not its credentials";
      }
      {
        ok = linesOf "earthquakes" "LoadCredential" == [ ];
        what = "aqueduct-earthquakes.service loads credentials it was not given";
      }
      {
        ok = linesOf "earthquakes" "EnvironmentFile" == [ ];
        what = "aqueduct-earthquakes.service has an EnvironmentFile it was not given";
      }
      {
        ok = has "users" ''Environment="AQUEDUCT_LOG=debug"'';
        what = "aqueduct-users.service lacks its environment AQUEDUCT_LOG=debug";
      }
      {
        ok = lib.elem "multi-user.target" config.systemd.services.aqueduct-users.wantedBy;
        what = "aqueduct-users.service does not start at boot";
      }
      {
        ok = !(config.systemd.services ? aqueduct-off);
        what = "the disabled pipeline `off` has a unit";
      }
      {
        ok =
          lib.sort lib.lessThan aqueductChecks == [
            "aqueduct-earthquakes-check"
            "aqueduct-users-check"
          ];
        what = "system.checks holds ${toString aqueductChecks}, not one `aqueduct check` per enabled pipeline";
      }
      {
        ok = lib.all (a: a.assertion) config.assertions;
        what = "a NixOS assertion fails: ${
          toString (map (a: a.message) (lib.filter (a: !a.assertion) config.assertions))
        }";
      }
      {
        # A pipeline with both `settings` and `specFile` is refused by the module's assertion.
        ok =
          let
            both =
              (systemWith {
                both = {
                  specFile = users;
                  settings.name = "both";
                };
              }).config;
          in
          lib.any (
            a: !a.assertion && lib.hasInfix "pipelines.both: set exactly one of" a.message
          ) both.assertions;
        what = "a pipeline with both `settings` and `specFile` is not refused";
      }
    ];
  failed = lib.filter (e: !e.ok) expectations;
in
if failed == [ ] then
  pkgs.writeText "aqueduct-module-check" "${toString (lib.length expectations)} expectations hold\n"
else
  throw "services.aqueduct module check:\n${lib.concatMapStringsSep "\n" (e: "  - ${e.what}") failed}"
