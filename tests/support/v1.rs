//! A database shaped like the v1 order-service's (SPEC §16), for
//! `import-v1`'s tests and benchmark, on the tests' throwaway PostgreSQL.

/// The v1 order-service's schema as Prisma creates it: quoted enum types,
/// camelCase fields mapped to snake_case columns, cascading foreign keys.
pub const SCHEMA: &str = r#"
CREATE TYPE "OrderStatus" AS ENUM ('PENDING_PAYMENT', 'PAID', 'PROVISIONING', 'ACTIVE', 'FAILED', 'CANCELED');
CREATE TYPE "PlanDuration" AS ENUM ('MONTHLY', 'QUARTERLY', 'SEMI_ANNUAL', 'ANNUAL');
CREATE TYPE "ItemType" AS ENUM ('PLAN', 'IMAGE', 'ADDON');
CREATE TYPE "ProvisioningStatus" AS ENUM ('PENDING', 'IN_PROGRESS', 'SUCCESS', 'FAILED');
CREATE TABLE orders (
  id uuid PRIMARY KEY, user_id text NOT NULL, plan_id text NOT NULL,
  plan_name varchar(255) NOT NULL, image_id text NOT NULL, image_name varchar(255) NOT NULL,
  duration "PlanDuration" NOT NULL, base_price integer NOT NULL,
  promo_discount integer NOT NULL DEFAULT 0, coupon_code varchar(50),
  coupon_discount integer NOT NULL DEFAULT 0, final_price integer NOT NULL,
  currency varchar(3) NOT NULL DEFAULT 'IDR', status "OrderStatus" NOT NULL DEFAULT 'PENDING_PAYMENT',
  created_at timestamptz(3) NOT NULL DEFAULT now(), updated_at timestamptz(3) NOT NULL,
  paid_at timestamptz(3));
CREATE TABLE order_items (
  id uuid PRIMARY KEY, order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
  item_type "ItemType" NOT NULL, reference_id text NOT NULL, description varchar(500) NOT NULL,
  unit_price integer NOT NULL, quantity integer NOT NULL DEFAULT 1, total_price integer NOT NULL,
  created_at timestamptz(3) NOT NULL DEFAULT now());
CREATE TABLE provisioning_tasks (
  id uuid PRIMARY KEY, order_id uuid NOT NULL UNIQUE REFERENCES orders (id) ON DELETE CASCADE,
  status "ProvisioningStatus" NOT NULL DEFAULT 'PENDING',
  do_region varchar(50), do_size varchar(100), do_image varchar(100),
  droplet_id varchar(50), droplet_name varchar(255), ipv4_public varchar(45),
  ipv4_private varchar(45), droplet_status varchar(50), droplet_tags text[] NOT NULL DEFAULT '{}',
  droplet_created_at timestamptz(3), error_code varchar(100), error_message text,
  attempts integer NOT NULL DEFAULT 0, started_at timestamptz(3), completed_at timestamptz(3),
  created_at timestamptz(3) NOT NULL DEFAULT now(), updated_at timestamptz(3) NOT NULL);
CREATE TABLE status_history (
  id uuid PRIMARY KEY, order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
  previous_status varchar(50) NOT NULL, new_status varchar(50) NOT NULL,
  actor varchar(255) NOT NULL, reason text, metadata jsonb,
  created_at timestamptz(3) NOT NULL DEFAULT now());
"#;

/// A v1 database of `n` orders, each with two items and two history rows.
pub fn bulk(n: usize) -> String {
    let url = super::pg::cluster().fresh_database();
    let db = url.rsplit('/').next().unwrap_or_default();
    super::pg::cluster().psql(db, SCHEMA);
    super::pg::cluster().psql(
        db,
        &format!(
            "INSERT INTO orders SELECT md5('o' || i)::uuid, 'user-' || (i % 97), 'vps-basic', \
             'VPS Basic', 'ubuntu-22-04', 'Ubuntu 22.04', 'MONTHLY', 150000, 15000, NULL, 0, \
             135000, 'IDR', 'CANCELED', timestamptz '2026-01-01' + i * interval '1 second', \
             timestamptz '2026-01-01' + i * interval '1 second', NULL \
             FROM generate_series(1, {n}) i;\
             INSERT INTO order_items SELECT gen_random_uuid(), id, 'PLAN', 'vps-basic', 'VPS Basic', \
             150000, 1, 150000, created_at FROM orders;\
             INSERT INTO order_items SELECT gen_random_uuid(), id, 'IMAGE', 'ubuntu-22-04', 'Ubuntu', \
             0, 1, 0, created_at FROM orders;\
             INSERT INTO status_history SELECT gen_random_uuid(), id, '', 'PENDING_PAYMENT', \
             'user:' || user_id, NULL, NULL, created_at FROM orders;\
             INSERT INTO status_history SELECT gen_random_uuid(), id, 'PENDING_PAYMENT', 'CANCELED', \
             'user:' || user_id, 'changed my mind', NULL, created_at + interval '5 minutes' FROM orders"
        ),
    );
    url
}
