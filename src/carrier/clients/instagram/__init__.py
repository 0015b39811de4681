"""Posting media to Instagram: FTP upload, Graph API two-step publish, daily limit, queue.

Python API (the ``carrier instagram`` commands are a thin layer over it)::

    from carrier.bootstrap import build_instagram_client, prepare_store
    from carrier.settings import load_settings

    settings = load_settings()
    store = await prepare_store(settings)
    client = build_instagram_client(settings, store)   # credentials from the environment
    try:
        outcome = await client.post(Path("fish.jpg"), caption="Blub #fish")
        # or: await client.post(Path("reel.mp4"), generate_caption=True, about="the sea")
        print(outcome.message, outcome.post.status, outcome.post.media_id)
        for post in await client.queued():     # waiting for the publishing limit
            ...
        await client.cancel(post_id)
        report = await client.run_queue()      # the scheduled job: publish what is allowed
    finally:
        await client.aclose()
        await store.close()

``client.post`` validates the file and caption first (:class:`MediaRejected`: nothing is
uploaded or recorded), records the post (one request id = one post, however often it is
retried), uploads the file, creates the media container, waits for Instagram to process it,
and publishes it, or leaves it queued when the publishing limit is reached.

=================  ===========================================================================
module             concept
=================  ===========================================================================
``credentials``    INSTAGRAM_ACCOUNT_ID, INSTAGRAM_ACCESS_TOKEN, FTP_* and HTTP_SERVER from
                   the environment; :class:`MissingCredentials` names what is missing
``validation``     Instagram's published limits (file type by content, size, aspect ratio,
                   video duration; caption length, hashtags, @-mentions), with sources
``ftp``            the FTP(S) upload with content-derived names and retries
``graph``          the Graph API calls and their errors (:class:`TokenExpired`,
                   :class:`RateLimited`, :class:`GraphUnavailable`)
``poster``         one post's two-step publish, every attempt recorded, never twice
``queue``          the rolling 24-hour limit and the queue runner (:func:`run_queue`)
``caption``        captions in the persona's voice through the responder chain
``client``         :class:`InstagramClient`, all of the above for one agent
=================  ===========================================================================
"""

from carrier.clients.instagram.caption import fit_caption, write_caption
from carrier.clients.instagram.client import InstagramClient, PostOutcome
from carrier.clients.instagram.credentials import (
    InstagramCredentials,
    MissingCredentials,
    load_credentials,
)
from carrier.clients.instagram.ftp import FtpUploader, UploadFailed
from carrier.clients.instagram.graph import (
    GraphClient,
    GraphError,
    GraphUnavailable,
    RateLimited,
    TokenExpired,
)
from carrier.clients.instagram.poster import AttemptResult, InstagramPoster
from carrier.clients.instagram.queue import Allowance, PublishQueue, QueueReport, run_queue
from carrier.clients.instagram.validation import (
    MediaFile,
    MediaLimits,
    MediaRejected,
    check_caption,
    inspect_media,
    validate_post,
)

__all__ = [
    "Allowance",
    "AttemptResult",
    "FtpUploader",
    "GraphClient",
    "GraphError",
    "GraphUnavailable",
    "InstagramClient",
    "InstagramCredentials",
    "InstagramPoster",
    "MediaFile",
    "MediaLimits",
    "MediaRejected",
    "MissingCredentials",
    "PostOutcome",
    "PublishQueue",
    "QueueReport",
    "RateLimited",
    "TokenExpired",
    "UploadFailed",
    "check_caption",
    "fit_caption",
    "inspect_media",
    "load_credentials",
    "run_queue",
    "validate_post",
    "write_caption",
]
