/* vmc-mux-private.h — the multiplexer's internal state, shared by the core
 * (vmc-mux.c) and the shared-agent rules (vmc-mux-share.c). Not installed, not
 * part of the contract in vmc-mux.h.
 */
#pragma once

#include "server/vmc-mux.h"

#include <spice/vd_agent.h>

#include "protocol/vmc-agent.h"
#include "protocol/vmc-chunk.h"

G_BEGIN_DECLS

/* ------------------------------------------------------------------------- */
/* constants */

#define SERVER_SEND_MAX (64u * 1024u) /* payload of vmc_mux_send_server_message() */
#define CAPS_MAX_WORDS 16u
#define XFER_MAX_PER_CLIENT 128u
#define NSEL 4u /* clipboard selections tracked (0..2, 3 = anything else) */

#define PIECE_START (1u << 0)
#define PIECE_END (1u << 1)
#define PIECE_CHARGED (1u << 2) /* returns a token to its client once written */
#define PIECE_SERIAL (1u << 3)  /* a client GRAB: the agent's serial is set when it goes out */

/* port_owner value while the mux completes a departed client's message */
#define FILLER_OWNER G_MAXUINT32

/* shared agent */
#define SHARE_WHOLE_UNITS 33u          /* staged whole: spice-gtk's 64 KiB FILE_XFER_DATA */
#define SHARE_CAPTURE_MAX 4096u        /* client messages the mux reads whole */
#define SHARE_FILLER_MAX (128u * 1024u * 1024u)
#define SHARE_REQ_MAX 16u              /* pending clipboard requests per selection */
#define SHARE_REPLY_MAX 16u            /* pending REPLY routes */
#define SHARE_NSETTINGS 4u             /* MONITORS_CONFIG, DISPLAY_CONFIG, 2 x AUDIO_VOLUME_SYNC */

/* ------------------------------------------------------------------------- */
/* types */

/* One chunk (8-byte header + payload) queued towards the guest. */
typedef struct _Piece Piece;
struct _Piece {
    Piece *next;
    guint32 client_id; /* the client whose message this is; 0 for mux-made chunks */
    guint32 msg_type;  /* agent message type (mux-made port-2 chunks: coalescing) */
    guint8 flags;      /* PIECE_* */
    gsize len;         /* header + payload */
    guint8 data[];
};

typedef struct {
    Piece *head;
    Piece *tail;
    gsize bytes;
    guint count; /* pieces */
    guint ends;  /* pieces with PIECE_END */
} PieceQueue;

/* One main-channel message queued towards a client. */
typedef struct _OutMsg OutMsg;
struct _OutMsg {
    OutMsg *next;
    guint16 type;     /* SPICE_MSG_MAIN_AGENT_* */
    gboolean peeked;  /* handed out by vmc_mux_client_peek(): never modified again */
    gboolean msg_end; /* AGENT_DATA that ends an agent message */
    GBytes *bytes;    /* AGENT_DATA body (shared between clients), or NULL */
    guint8 small[4];  /* body of the other messages */
    gsize len;
};

typedef struct {
    OutMsg *head;
    OutMsg *tail;
    gsize bytes;
    guint count;
} OutQueue;

typedef enum {
    DISP_FORWARD, /* staged for the guest */
    DISP_DROP,    /* counted and dropped */
    DISP_ANSWER,  /* dropped; the mux answers the client itself (see answer_*) */
} Disposition;

typedef enum {
    ANSWER_NONE,
    ANSWER_XFER_STATUS, /* FILE_XFER_STATUS(id, answer_status) once the id is known */
} AnswerKind;

typedef enum {
    STALL_NONE,
    STALL_HOLD, /* owns the port mid-message, sends nothing, others wait */
    STALL_SLOW, /* its queue is full and holds the guest back for others */
} StallKind;

/* Who gets an agent message (decided on its first piece). */
typedef enum {
    ROUTE_ALL,  /* every started client */
    ROUTE_ONE,  /* one client */
    ROUTE_NONE, /* nobody */
    ROUTE_CLIP, /* every started client that takes part in the clipboard */
} RouteKind;

typedef struct {
    RouteKind kind;
    guint32 to;         /* ROUTE_ONE */
    gboolean per_client; /* the first piece is rewritten for each recipient */
} Route;

/* A file transfer of a client, under a mux-wide id (shared agent). */
typedef struct {
    guint32 agent_id;
    guint32 client_id;
    guint32 client_xfer_id;
} Xfer;

typedef struct {
    guint32 id;
    guint caps;
    gboolean left; /* removed or cut off: queues gone, nothing accepted */
    GError *error; /* why it was cut off (sticky) */

    /* client -> agent */
    VmcAgentTracker tracker;
    Disposition disp; /* of the message in progress */
    AnswerKind answer;
    guint32 answer_status;
    gboolean answered;
    guint32 msg_type;
    guint64 msg_off; /* bytes of the message in progress seen so far */
    guint8 msg_head[VMC_AGENT_HEADER_SIZE + 4];
    PieceQueue staged;
    guint32 in_flight;      /* charged units not yet written or dropped */
    guint32 unreturned;     /* released, AGENT_TOKEN not yet queued */
    guint32 resets_pending; /* AGENT_CONNECTED_TOKENS queued, AGENT_START not yet seen */
    guint32 forgiven;       /* units received while resets_pending > 0 */
    gboolean started;       /* AGENT_START seen for the current agent instance */

    /* agent -> client */
    guint32 budget; /* AGENT_DATA it still allows; G_MAXUINT32 = unlimited */
    gboolean rx_in_message;
    OutQueue out;    /* visible to peek/pop */
    OutQueue held;   /* AGENT_DATA waiting for budget */
    OutQueue inject; /* mux-made agent messages waiting for a message boundary */
    gboolean over_limit;

    gint64 stall_since;
    StallKind stall_kind;

    VmcMuxStats stats;

    /* shared agent (vmc-mux-share.c) */
    guint64 start_seq;         /* order of its AGENT_START: the primary is the oldest */
    GHashTable *xfers;         /* client xfer id -> Xfer* */
    Xfer *msg_xfer;            /* FILE_XFER message whose id is rewritten */
    gboolean msg_serial_set;   /* CLIPBOARD_GRAB whose serial is rewritten */
    gboolean capturing;        /* the message in progress is kept whole in `capture` */
    GByteArray *capture;
    gboolean joined;           /* its ANNOUNCE_CAPABILITIES arrived (this agent instance) */
    guint32 ccaps[CAPS_MAX_WORDS];
    gsize nccaps;
    gboolean clip_off;         /* cannot use the session's clipboard layout */
    guint32 serial[NSEL];      /* serial its next agent GRAB must carry (spice-gtk's counter) */
    gboolean guest_offer[NSEL]; /* its last word from the agent on it was a GRAB */
    gboolean has_max_clipboard;
    gint32 max_clipboard;
    GBytes *setting[SHARE_NSETTINGS]; /* its last guest-wide settings, whole messages */
} Client;

typedef struct {
    guint32 client_id; /* 0: the requester left, the answer is dropped */
    guint32 type;
} ShareRequest;

typedef struct {
    guint32 owner;        /* the client that grabbed last; 0: the agent or nobody */
    guint32 agent_serial; /* serial the agent's next GRAB carries (its counter) */
    ShareRequest req[SHARE_REQ_MAX];
    guint nreq;
} ShareSel;

typedef struct {
    guint32 client_id; /* 0: mux-made, the reply is dropped */
    guint32 type;      /* MONITORS_CONFIG or DISPLAY_CONFIG */
} ShareReply;

typedef struct {
    gboolean active;                /* joined clients are in the agent's session */
    gboolean reset_pending;         /* a caps request went out, the agent's answer not in */
    guint32 told[CAPS_MAX_WORDS];   /* client caps the agent was told last */
    gsize ntold;
    guint32 layout;                 /* clipboard layout bits, fixed while active */
    gboolean max_clipboard_told;
    gint32 max_clipboard;
    ShareSel sel[NSEL];
    ShareReply reply[SHARE_REPLY_MAX];
    guint nreply;
} Share;

struct _VmcMux {
    VmcMuxConfig cfg;
    guint32 token_batch;
    guint whole_units; /* shared agent: units staged before a message may start */
    gint64 now;

    VmcMuxNotifyFunc notify;
    gpointer notify_data;
    VmcMuxServerMessageFunc server_msg;
    gpointer server_msg_data;
    VmcMuxTapFunc tap;
    gpointer tap_data;

    GPtrArray *clients; /* Client*, in round-robin order */
    GHashTable *by_id;  /* id -> Client* */
    guint32 next_id;
    guint rr_next;
    guint64 start_counter;

    /* guest input */
    gboolean guest_connected;
    gboolean guest_failed;
    VmcChunkDecoder dec;
    VmcAgentTracker rx_track[2]; /* ports 1 and 2 */
    guint64 rx_msg_off[2];
    gboolean rx_in_msg[2];
    guint8 rx_piece[VMC_CHUNK_MAX_PAYLOAD];
    gsize rx_piece_len;
    gboolean rx_piece_first; /* the piece being built is the message's first */
    gboolean rx_drop;        /* current port-1 message goes to nobody */
    guint rx_recipients;
    GByteArray *srv_msg; /* port-2 message being assembled, or NULL */
    gboolean srv_skip;

    /* guest output */
    PieceQueue gout;
    gsize gout_off;          /* bytes of gout.head already written */
    PieceQueue srv_pending;  /* mux-made messages waiting for a port-1 boundary */
    guint32 port_owner;      /* client whose port-1 message is in progress, 0 none */
    gboolean last_wants_input;
    /* the port-1 client message in progress (what a filler must complete) */
    guint64 port_msg_total;  /* header + payload */
    guint64 port_msg_sent;   /* of it, moved to the guest output */
    guint32 port_msg_type;
    guint8 port_msg_head[VMC_AGENT_HEADER_SIZE + 8];
    gsize port_msg_head_len;
    guint64 filler_left;     /* zero bytes still owed (port_owner == FILLER_OWNER) */

    /* what the mux knows about the agent */
    gboolean have_agent_caps;
    guint32 agent_caps[CAPS_MAX_WORDS]; /* raw, as the agent sent them */
    gsize agent_ncaps;
    GHashTable *xfers; /* agent xfer id -> Xfer* (owns) */
    guint32 next_xfer_id;
    Share share;

    VmcMuxStats gstats;
};

/* ------------------------------------------------------------------------- */
/* core services used by the shared-agent rules (vmc-mux.c) */

G_GNUC_INTERNAL Client *vmc_mux_core_lookup(VmcMux *mux, guint32 id);
/* Header + payload of one agent message, as a new GBytes. */
G_GNUC_INTERNAL GBytes *vmc_mux_core_agent_msg_new(guint32 type, const guint8 *payload,
                                                   gsize len);
/* A mux-made agent message on `port`: single-chunk port-2 messages go out at the next
 * chunk boundary, everything else at the next port-1 message boundary. */
G_GNUC_INTERNAL void vmc_mux_core_queue_message(VmcMux *mux, guint32 port, guint32 type,
                                                const guint8 *payload, gsize len);
/* A whole agent message for one client, between the agent's messages. */
G_GNUC_INTERNAL void vmc_mux_core_inject(VmcMux *mux, Client *c, GBytes *msg);
/* A whole agent message of the client's own (already paid for), in its staging queue. */
G_GNUC_INTERNAL void vmc_mux_core_stage(VmcMux *mux, Client *c, const guint8 *msg, gsize len);

/* ------------------------------------------------------------------------- */
/* shared-agent rules (vmc-mux-share.c), only with max_clients > 1 */

G_GNUC_INTERNAL void vmc_mux_share_reset(VmcMux *mux);
G_GNUC_INTERNAL void vmc_mux_share_client_init(Client *c);
G_GNUC_INTERNAL void vmc_mux_share_client_clear(Client *c);
G_GNUC_INTERNAL void vmc_mux_share_client_started(VmcMux *mux, Client *c);
/* A client message starts (`body` holds its header): sets c->disp; FALSE on a
 * protocol error (*what says why). */
G_GNUC_INTERNAL gboolean vmc_mux_share_classify(VmcMux *mux, Client *c, const guint8 *body,
                                                gsize len, const char **what);
/* Rewrites the first unit of a forwarded message (transfer id; marks a grab). */
G_GNUC_INTERNAL void vmc_mux_share_rewrite_unit(VmcMux *mux, Client *c, Piece *p);
/* The first chunk of a client message moves to the guest output: what the agent
 * will see next (grab serials, a caps request that resets it). */
G_GNUC_INTERNAL void vmc_mux_share_piece_out(VmcMux *mux, Piece *p);
/* The client's message ended (whatever its disposition). */
G_GNUC_INTERNAL void vmc_mux_share_msg_end(VmcMux *mux, Client *c);
/* Routing of the agent message whose first piece is `msg` (may rewrite it). */
G_GNUC_INTERNAL void vmc_mux_share_agent_route(VmcMux *mux, guint8 *msg, gsize n,
                                               const VmcAgentHeader *h, Route *route);
/* The first piece of a per_client message, as `c` gets it; NULL: not for it. */
G_GNUC_INTERNAL GBytes *vmc_mux_share_agent_piece(VmcMux *mux, Client *c, const guint8 *msg,
                                                  gsize n);
/* A client left while others stay (c->left is set). FALSE: the agent must be reset
 * with CLIENT_DISCONNECTED instead (a partial message too large to complete). */
G_GNUC_INTERNAL gboolean vmc_mux_share_client_leave(VmcMux *mux, Client *c, gboolean held_port);
/* The agent was sent CLIENT_DISCONNECTED: it forgot transfers and clipboard owners. */
G_GNUC_INTERNAL void vmc_mux_share_agent_forgot(VmcMux *mux);
G_GNUC_INTERNAL void vmc_mux_share_xfer_clear(VmcMux *mux);

G_END_DECLS
