for file in ${WAIT_FOR_FILES:-}; do
  until [ -e "$file" ]; do echo "waiting for $file (the twinops-models Job puts it on the volume)"; sleep 5; done
  echo "found $file"
done
for service in ${WAIT_FOR_SERVICES:-}; do
  until python3 -c 'import socket, sys; host, port = sys.argv[1].rsplit(":", 1); socket.create_connection((host, int(port)), 3).close()' "$service" 2>/dev/null; do
    echo "waiting for $service to accept connections"; sleep 5
  done
  echo "$service accepts connections"
done
