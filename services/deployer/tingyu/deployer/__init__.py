"""The deployer: owns desired state and jobs; turns commands into desired state and reports into results."""
