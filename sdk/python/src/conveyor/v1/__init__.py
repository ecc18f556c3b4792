"""Generated protobuf and gRPC stubs for the conveyor.v1 contract (do not edit; run `make proto`)."""
