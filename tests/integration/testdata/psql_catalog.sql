\d
\dt
\dt ord*
\di
\di *_key
\dv
\ds
\dn
\du
\df
\dt nothing_here
\d orders
\d items
\d tags
\d active_items
\d nothing_here
