"""Where chatapp reaches below the public API of python-socketio, python-engineio and aiohttp.

The modules of :data:`INTERNAL_USERS` use those libraries' internals; everything else in
chatapp uses their public API and those modules' classes and functions. What is policy
(limits, the feed, the Redis self-check) lives in ``transport.py`` and ``fanout.py``; those
modules only provide the hooks, so that a library upgrade has a known set of places to
re-check.

Internals used; ``tests/test_library_contracts.py`` checks, by behaviour, that the installed
versions still do what chatapp relies on, and names the test guarding each (a library
upgrade that fails there means re-reading its new code and these modules):

* python-engineio: ``AsyncServer._async`` (the aiohttp driver's ``translate_request`` and
  ``websocket`` entries; ``WebSocket(handler, server)`` with ``handler``, ``server``,
  ``_sock``, ``environ``, ``send``, ``wait``, ``close``, and ``handler`` bound to its
  ``AsyncSocket``), ``.handlers``, ``.sockets``, ``.max_http_buffer_size``,
  ``.ping_interval``, ``.ping_timeout``, ``.reason``; what
  ``AsyncSocket._websocket_handler`` does (repeated by a detached
  ``websocket.ChatWebSocket``, whose writer runs only while the queue holds packets), that
  its writer waits in ``queue.get()`` and that its loop ends when ``wait()`` returns None;
  what ``AsyncServer._service_task`` does (repeated by
  ``sessions.Sessions._watch_sessions``), and that ``.start_service_task = False`` before
  the first request keeps it from starting; ``.create_queue`` (replaced on the server, so
  that every ``AsyncSocket.queue`` is a ``sendqueue.SendQueue``, which has exactly the queue
  methods engine.io calls); ``.generate_id`` (replaced on the server by
  ``sessionids.SessionIds``; python-socketio's manager calls it too, through ``.eio``);
  ``AsyncSocket`` itself (no ``__slots__``: a session's class is
  changed to ``heartbeat.ChatSocket``, in the connect event, before ``_handle_connect``
  makes the first ``schedule_ping()`` call), what its ``schedule_ping`` / ``_send_ping`` /
  ``send`` do (repeated by ``heartbeat.ChatSocket`` with a timer), ``.last_ping``,
  ``AsyncSocket.receive()``, ``.close(wait=, abort=, reason=)``, ``.sid``, ``.connected``,
  ``.closed``, ``.closing``, ``.upgraded``, ``.upgrading``; ``packet.Packet``
  (``packet_type``, ``binary``, ``encoded_packet=``), which text it fails to decode and
  that a MESSAGE payload with a leading digit stays text, and
  that long-polling's ``Payload.encode`` asks each packet for ``encode(b64=True)``;
  ``exceptions.UnknownPacketError`` / ``SocketIsClosedError``; the "Cannot send to sid %s"
  log line of ``AsyncServer.send_packet``;
* python-socketio: ``AsyncServer._send_packet`` and ``.packet_class`` (with
  ``binary=False``, its ``.json``, and how ``Packet(encoded_packet=)`` decodes an EVENT's
  text), ``.eio``, ``.handlers`` (by namespace, then event name), ``._binary_packet`` (by
  engine.io sid, while a binary event waits for its attachments);
  ``AsyncManager.emit``'s signature and behaviour, ``.json`` (set by ``set_server``),
  ``.rooms``, ``.get_participants``, ``.eio_sid_from_sid``, ``.sid_from_eio_sid``,
  ``.is_connected``, ``.basic_enter_room``, ``.disconnect(ignore_queue=)``;
  ``AsyncPubSubManager`` (imported from its module: the package does not export it) as the
  base of a message queue: ``_publish`` (awaited by ``emit``) and ``_listen`` (iterated by
  the task ``initialize()`` starts, which may be cancelled) implemented, and the
  ``emit -> _handle_emit -> super().emit`` call chain that delivers both this process's
  emits and those heard on the channel;
* aiohttp: ``WebSocketResponse(compress=...)``, ``.send_frame``, ``.closed`` (set before
  the close frame is written), and that its writer writes an uncompressed frame to the
  transport synchronously, keeping nothing back, so a frame written straight to the
  transport cannot land inside another (upgraded connections). To detach: the response's
  ``_parser`` (``WebSocketReader``) and ``_reader`` (``WebSocketDataQueue``: ``_protocol``,
  whose ``_reading_paused`` / ``pause_reading`` / ``resume_reading`` it drives, ``_buffer``,
  ``read()`` returning without suspending while a message waits, ``exception()``);
  ``_set_closed()``, after which ``close()`` / ``write_eof()`` write nothing; the request
  handler's ``transport`` and ``_payload_parser``, and that its ``connection_lost(None)``
  forgets the connection in the server and touches the transport and the reader only
  through those two; that ``start()`` leaves the transport alone once force-closed.
"""

#: The chatapp modules that use the internals above.
INTERNAL_USERS = (
    "chatapp.frames",
    "chatapp.sendqueue",
    "chatapp.heartbeat",
    "chatapp.websocket",
    "chatapp.sessions",
    "chatapp.managers",
    "chatapp.liblog",
    "chatapp.events",
)
