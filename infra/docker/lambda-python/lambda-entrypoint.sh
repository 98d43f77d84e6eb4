#!/bin/sh
# The image's ENTRYPOINT, as in AWS's images: under Lambda (AWS_LAMBDA_RUNTIME_API set) start the
# runtime; otherwise start it behind the Runtime Interface Emulator when the image carries one
# (SAM adds /var/rapid/aws-lambda-rie, and starts that itself).
if [ -n "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
  exec /var/runtime/bootstrap "$@"
fi
for rie in /usr/local/bin/aws-lambda-rie /var/rapid/aws-lambda-rie; do
  if [ -x "$rie" ]; then
    exec "$rie" /var/runtime/bootstrap "$@"
  fi
done
echo "no AWS_LAMBDA_RUNTIME_API and no aws-lambda-rie: nothing to serve the runtime" >&2
exit 1
