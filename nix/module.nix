# services.aqueduct: one hardened systemd unit per pipeline. `packages` is the flake's own,
# for the default of `services.aqueduct.package`.
{ packages }:
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.aqueduct;
  toml = pkgs.formats.toml { };
  enabled = lib.filterAttrs (_: p: p.enable) cfg.pipelines;

  pipelineOptions =
    { name, ... }:
    {
      options = {
        enable = lib.mkEnableOption "the aqueduct pipeline ${name}" // {
          default = true;
        };
        settings = lib.mkOption {
          inherit (toml) type;
          default = { };
          example = lib.literalExpression ''
            lib.recursiveUpdate (lib.importTOML ./pipelines/users.toml) {
              validate.schema_file = "''${./pipelines/schemas/randomuser-user.json}";
              kafka.bootstrap_servers = "kafka:9092";
            }
          '';
          description = ''
            The pipeline spec (the keys of the spec reference, docs/src/reference/spec.md), rendered to
            TOML. `name` defaults to the attribute name. The rendered file lives alone
            in the Nix store, so give `validate.schema_file` as an absolute path, e.g.
            `"''${./schemas/users.json}"`. Set this or `specFile`, not both.
          '';
        };
        specFile = lib.mkOption {
          type = lib.types.nullOr lib.types.path;
          default = null;
          example = lib.literalExpression ''"''${config.services.aqueduct.package}/share/aqueduct/pipelines/users.toml"'';
          description = ''
            An existing spec file to run instead of `settings`. A relative
            `validate.schema_file` resolves against the file's directory, so pass a
            path inside a directory that holds the schema too, such as the package's
            `share/aqueduct/pipelines` or `"''${./pipelines}/users.toml"`.
          '';
        };
        environment = lib.mkOption {
          type = lib.types.attrsOf lib.types.str;
          default = { };
          example = {
            AQUEDUCT_KAFKA__BOOTSTRAP_SERVERS = "kafka:9092";
            AQUEDUCT_CASSANDRA__CONTACT_POINTS = ''["cassandra:9042"]'';
            AQUEDUCT_LOG = "info";
          };
          description = ''
            Environment of the service: spec overrides `AQUEDUCT_<SECTION>__<KEY>`
            and `AQUEDUCT_LOG`. The build-time check sees them too. They end up in
            the Nix store: put secrets in `environmentFile`.
          '';
        };
        environmentFile = lib.mkOption {
          type = lib.types.nullOr lib.types.path;
          default = null;
          example = "/run/secrets/aqueduct-users.env";
          description = ''
            A file of `NAME=value` lines read when the service starts (systemd's
            `EnvironmentFile`), for secrets such as `AQUEDUCT_CASSANDRA__PASSWORD`.
            The build-time check does not see it, so a required key set only here
            needs `checkSpec = false`.
          '';
        };
        credentials = lib.mkOption {
          type = lib.types.attrsOf lib.types.path;
          default = { };
          example = {
            cassandra-password = "/run/secrets/cassandra-password";
          };
          description = ''
            Secret files handed to the service (systemd's `LoadCredential`): the
            dynamic user cannot read them where they are, the service reads each at
            `/run/credentials/aqueduct-<name>.service/<credential>`. Point the spec's
            `password_file`, `key_file`, ... there. The build-time check does not
            see them, so a spec reading them needs `checkSpec = false`.
          '';
        };
        extraArgs = lib.mkOption {
          type = lib.types.listOf lib.types.str;
          default = [ ];
          example = [
            "--only"
            "load"
          ];
          description = ''
            Arguments of `aqueduct run` before the spec: `--only ingest|load`,
            `--once`, `--log-format json`.
          '';
        };
        checkSpec = lib.mkOption {
          type = lib.types.bool;
          default = true;
          description = ''
            Run `aqueduct check` on the spec, with `environment`, when the system is
            built, so that an invalid spec fails the build instead of the service.
          '';
        };
      };
    };

  specOf =
    name: p:
    if p.specFile != null then
      p.specFile
    else
      toml.generate "${name}.toml" ({ inherit name; } // p.settings);

  # Offline, in the build sandbox, as nixpkgs' vector module validates its config
  # (nixos/modules/services/logging/vector.nix).
  checkedSpec =
    name: p:
    pkgs.runCommand "aqueduct-${name}-check"
      {
        nativeBuildInputs = [ cfg.package ];
        env = p.environment;
      }
      ''
        aqueduct check ${specOf name p} > $out
      '';

  unitFor = name: p: {
    description = "aqueduct pipeline ${name}";
    wantedBy = [ "multi-user.target" ];
    wants = [ "network-online.target" ];
    # Ordering only: aqueduct itself retries (and systemd restarts it) until the
    # servers answer, wherever they run.
    after = [
      "network-online.target"
    ]
    ++ lib.optional config.services.apache-kafka.enable "apache-kafka.service"
    ++ lib.optional config.services.cassandra.enable "cassandra.service";
    inherit (p) environment;
    serviceConfig = {
      ExecStart = "${lib.getExe cfg.package} run ${
        lib.escapeShellArgs (p.extraArgs ++ [ "${specOf name p}" ])
      }";
      EnvironmentFile = lib.mkIf (p.environmentFile != null) p.environmentFile;
      LoadCredential = lib.mapAttrsToList (credential: file: "${credential}:${file}") p.credentials;
      Restart = "on-failure";
      RestartSec = 5;
      # Exit 2 is an invalid spec or usage: a restart cannot fix it.
      RestartPreventExitStatus = 2;
      DynamicUser = true;
      # A folder the service may write: where a rotating OAuth2 refresh token lives
      # (`refresh_token_file = "/var/lib/aqueduct-<name>/refresh-token"`).
      StateDirectory = "aqueduct-${name}";
      CapabilityBoundingSet = "";
      LockPersonality = true;
      MemoryDenyWriteExecute = true;
      NoNewPrivileges = true;
      PrivateDevices = true;
      PrivateTmp = true;
      PrivateUsers = true;
      ProtectClock = true;
      ProtectControlGroups = true;
      ProtectHome = true;
      ProtectHostname = true;
      ProtectKernelLogs = true;
      ProtectKernelModules = true;
      ProtectKernelTunables = true;
      ProtectProc = "invisible";
      ProtectSystem = "strict";
      RemoveIPC = true;
      # AF_NETLINK: glibc's getaddrinfo asks the kernel for local addresses.
      RestrictAddressFamilies = [
        "AF_INET"
        "AF_INET6"
        "AF_UNIX"
        "AF_NETLINK"
      ];
      RestrictNamespaces = true;
      RestrictRealtime = true;
      RestrictSUIDSGID = true;
      SystemCallArchitectures = "native";
      SystemCallFilter = [
        "@system-service"
        "~@privileged"
        "~@resources"
      ];
      UMask = "0077";
    };
    # Keep restarting while Kafka or Cassandra is down, however long.
    unitConfig.StartLimitIntervalSec = 0;
  };
in
{
  options.services.aqueduct = {
    package = lib.mkOption {
      type = lib.types.package;
      # `inherit`, not `default = ….default`: statix's manual_inherit_from lint.
      inherit (packages.${pkgs.stdenv.hostPlatform.system}) default;
      defaultText = lib.literalExpression "aqueduct.packages.\${pkgs.stdenv.hostPlatform.system}.default";
      description = "The aqueduct package the pipelines run (and are checked) with.";
    };
    pipelines = lib.mkOption {
      type = lib.types.attrsOf (lib.types.submodule pipelineOptions);
      default = { };
      description = ''
        Pipelines to run, one systemd service `aqueduct-<name>.service` each.
      '';
    };
  };

  config = {
    assertions = lib.mapAttrsToList (name: p: {
      assertion = (p.settings == { }) != (p.specFile == null);
      message = "services.aqueduct.pipelines.${name}: set exactly one of `settings` and `specFile`.";
    }) enabled;

    system.checks = lib.mapAttrsToList checkedSpec (lib.filterAttrs (_: p: p.checkSpec) enabled);

    systemd.services = lib.mapAttrs' (
      name: p: lib.nameValuePair "aqueduct-${name}" (unitFor name p)
    ) enabled;
  };
}
