"""A real gRPC peer (grpcio) for Pillion's gRPC tests, with raw bytes for messages (no protobuf).

  grpc_peer.py serve PORT [NAME [down]]
      echo server: /pillion.Echo/Unary echoes, Stream echoes each message, Slow echoes after 3 s,
      NotFound fails with NOT_FOUND, Unavailable with UNAVAILABLE, Who answers NAME (or, when
      `down`, fails with UNAVAILABLE), StreamFail sends one message then fails with UNAVAILABLE,
      Calls answers how many Who and StreamFail calls it took; prints "ready" once serving
  grpc_peer.py call ADDR METHOD       one call through ADDR; prints "CODE details" (CODE is OK or the
                                      grpc.StatusCode name) and, for OK, the reply; a streaming
                                      call that fails prints what arrived before the status too
"""
import sys
import time
from concurrent import futures

import grpc


def serve(port, name="echo", down=False):
    calls = [0]

    def unary(request, _context):
        return request

    def fail(code):
        def handler(_request, context):
            context.abort(code, code.name.lower())

        return handler

    def who(_request, context):
        calls[0] += 1
        if down:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{name} is down")
        return name.encode()

    def stream_fail(_requests, context):
        calls[0] += 1
        yield name.encode()
        context.abort(grpc.StatusCode.UNAVAILABLE, "after a message")

    def count(_request, _context):
        return str(calls[0]).encode()

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
            "NotFound": grpc.unary_unary_rpc_method_handler(fail(grpc.StatusCode.NOT_FOUND)),
            "Unavailable": grpc.unary_unary_rpc_method_handler(fail(grpc.StatusCode.UNAVAILABLE)),
            "Who": grpc.unary_unary_rpc_method_handler(who),
            "StreamFail": grpc.stream_stream_rpc_method_handler(stream_fail),
            "Calls": grpc.unary_unary_rpc_method_handler(count),
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
        if method in ("Stream", "StreamFail"):
            got = []
            try:
                for r in channel.stream_stream(f"/pillion.Echo/{method}")(iter([b"a", b"b", b"c"]), timeout=10):
                    got.append(r)
            except grpc.RpcError as e:
                print(e.code().name, e.details(), b"".join(got).decode())
                return
            print("OK", b"".join(got).decode())
        else:
            print("OK", channel.unary_unary(f"/pillion.Echo/{method}")(b"hello", timeout=10).decode())
    except grpc.RpcError as e:
        print(e.code().name, e.details())


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), *sys.argv[3:4], down=sys.argv[4:5] == ["down"])
    else:
        call(sys.argv[2], sys.argv[3])
