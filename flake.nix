{
  description = "aqueduct: declarative data pipelines (HTTP JSON API -> JSON Schema -> Kafka -> jq -> Cassandra)";

  # The current stable release branch; `nix flake lock` pins its commit in flake.lock.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  # An index: each output lives in nix/ (package, stack, module, checks).
  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      linuxSystems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      # Not x86_64-darwin: nixpkgs 26.05 is its last release and warns on every evaluation
      # (release notes, "x86_64-darwin-26.05").
      darwinSystems = [ "aarch64-darwin" ];
      forSystems = systems: f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forSystems (linuxSystems ++ darwinSystems) (pkgs: {
        default = pkgs.callPackage ./nix/package.nix { };
      });

      apps = forSystems linuxSystems (pkgs: {
        default = {
          type = "app";
          program = lib.getExe self.packages.${pkgs.stdenv.hostPlatform.system}.default;
          meta.description = "Run a pipeline: nix run . -- pipelines/users.toml";
        };
        stack = {
          type = "app";
          program = lib.getExe (pkgs.callPackage ./nix/stack.nix { });
          meta.description = "Local Kafka and Cassandra: nix run .#stack -- up|down|status|logs";
        };
      });

      devShells = forSystems (linuxSystems ++ darwinSystems) (pkgs: {
        default = pkgs.mkShell {
          # `cargo build` here builds the bundled librdkafka (no `dynamic-rdkafka`):
          # cmake, pkg-config and these libraries, as the Debian packages in .ci/run.
          buildInputs = [
            pkgs.openssl
            pkgs.zlib
            pkgs.zstd
            pkgs.curl
          ];
          packages = [
            pkgs.cargo
            pkgs.rustc
            pkgs.clippy
            pkgs.rustfmt
            pkgs.cmake
            pkgs.pkg-config
            pkgs.apacheKafka # kafka-topics.sh, kafka-console-consumer.sh, ...
            pkgs.cassandra # cqlsh, nodetool
            pkgs.python3 # scripts/*.py
            pkgs.nixfmt
          ];
        };
      });

      nixosModules.default = import ./nix/module.nix { inherit (self) packages; };

      # `nix fmt`: nixfmt (RFC 166 style) over every .nix file (pkgs/by-name/ni/nixfmt-tree).
      formatter = forSystems (linuxSystems ++ darwinSystems) (pkgs: pkgs.nixfmt-tree);

      checks = forSystems linuxSystems (pkgs: import ./nix/checks.nix { inherit self nixpkgs pkgs; });
    };
}
