"""A real gRPC peer (grpcio) for Pillion's gRPC tests, with raw bytes for messages (no protobuf).

  grpc_peer.py serve PORT             echo server: /pillion.Echo/Unary echoes, Stream echoes each
                                      message, Slow echoes after 3 s; prints "ready" once serving
  grpc_peer.py call ADDR METHOD       one call through ADDR; prints "CODE details" (CODE is OK or the
                                      grpc.StatusCode name) and, for OK, the reply
"""
import sys
import time
from concurrent import futures

import grpc


def serve(port):
    def unary(request, _context):
        return request

    def slow(request, _context):
        time.sleep(3)
        return request

    def stream(requests, _context):
        for r in requests:
            yield r

    handler = grpc.method_handlers_generic_handler(
        "pillion.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Slow": grpc.unary_unary_rpc_method_handler(slow),
            "Stream": grpc.stream_stream_rpc_method_handler(stream),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def call(addr, method):
    channel = grpc.insecure_channel(addr)
    try:
        if method == "Stream":
            replies = channel.stream_stream("/pillion.Echo/Stream")(iter([b"a", b"b", b"c"]), timeout=10)
            print("OK", b"".join(replies).decode())
        else:
            print("OK", channel.unary_unary(f"/pillion.Echo/{method}")(b"hello", timeout=10).decode())
    except grpc.RpcError as e:
        print(e.code().name, e.details())


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        call(sys.argv[2], sys.argv[3])
