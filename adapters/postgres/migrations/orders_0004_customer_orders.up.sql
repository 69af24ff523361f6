-- GET /orders for a customer: their orders by id (UUID v7: creation order).
CREATE INDEX orders_customer_id ON orders.orders (customer_id, id);
