"""Exit codes of `lookout-edge`, the AWS CLI's: 252 for a bad command line or input, 254 for a service error,
255 when a waited-for job FAILED."""

EXIT_USAGE = 252
EXIT_SERVICE_ERROR = 254
EXIT_WAIT_FAILED = 255
