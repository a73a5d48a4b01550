<?php
/**
 * The "Punkte" tab in My Account: balance, tier, rewards with a redeem button, the member's
 * codes, the history and the referral link.
 *
 * @package Stammkunde
 */

defined( 'ABSPATH' ) || exit;

/**
 * My Account → Punkte (endpoint /my-account/punkte/).
 */
class Stammkunde_Account {

	const ENDPOINT = 'punkte';
	const ACTION   = 'stammkunde_redeem';

	/**
	 * Hook the endpoint, the menu entry, the tab's content and the redeem form.
	 */
	public function register() {
		add_action( 'init', array( __CLASS__, 'add_endpoint' ) );
		add_filter( 'woocommerce_get_query_vars', array( $this, 'query_vars' ) );
		add_filter( 'woocommerce_account_menu_items', array( $this, 'menu_items' ) );
		add_filter( 'woocommerce_endpoint_' . self::ENDPOINT . '_title', array( $this, 'title' ) );
		add_action( 'woocommerce_account_' . self::ENDPOINT . '_endpoint', array( $this, 'render' ) );
		add_action( 'template_redirect', array( $this, 'handle_redeem' ) );
	}

	/**
	 * The rewrite endpoint (also called on activation, before the rules are flushed).
	 */
	public static function add_endpoint() {
		add_rewrite_endpoint( self::ENDPOINT, EP_ROOT | EP_PAGES );
	}

	/**
	 * Let WooCommerce know the endpoint (active menu entry, page title).
	 *
	 * @param array $vars Query vars by endpoint.
	 * @return array
	 */
	public function query_vars( $vars ) {
		$vars[ self::ENDPOINT ] = self::ENDPOINT;
		return $vars;
	}

	/**
	 * Insert "Punkte" before "Log out".
	 *
	 * @param array $items Menu items by endpoint.
	 * @return array
	 */
	public function menu_items( $items ) {
		$logout = null;
		if ( isset( $items['customer-logout'] ) ) {
			$logout = $items['customer-logout'];
			unset( $items['customer-logout'] );
		}
		$items[ self::ENDPOINT ] = __( 'Points', 'stammkunde' );
		if ( null !== $logout ) {
			$items['customer-logout'] = $logout;
		}
		return $items;
	}

	/**
	 * The tab's page title.
	 *
	 * @return string
	 */
	public function title() {
		return __( 'Your points', 'stammkunde' );
	}

	/**
	 * The tab: the member view, or the program for a customer the app does not know yet, or a
	 * short note (and no balance) when the app cannot be asked.
	 */
	public function render() {
		$user_id = get_current_user_id();
		if ( $user_id <= 0 ) {
			return;
		}
		$client = Stammkunde_Plugin::instance()->client();
		$view   = $client->member( $user_id, Stammkunde_Format::language() );
		echo '<div class="stammkunde-account">';
		if ( null === $view ) {
			echo '<p class="stammkunde-unavailable">' . esc_html__( 'Your points cannot be shown right now. Please try again later.', 'stammkunde' ) . '</p>';
		} elseif ( false === $view ) {
			$this->render_program( $client->program( Stammkunde_Format::language() ) );
		} else {
			$this->render_member( $view );
		}
		echo '</div>';
	}

	/**
	 * What a customer with no points yet sees: how to earn and what the rewards are.
	 *
	 * @param array|null $program The program view, or null when the app cannot be asked.
	 */
	private function render_program( $program ) {
		echo '<p>' . esc_html__( 'You collect points with your first order.', 'stammkunde' ) . '</p>';
		if ( ! is_array( $program ) ) {
			return;
		}
		if ( ! empty( $program['earn_text'] ) ) {
			echo '<p class="stammkunde-earning">' . esc_html( (string) $program['earn_text'] ) . '</p>';
		}
		$this->render_point_value( $program['point_value'] ?? null );
		$rewards = isset( $program['rewards'] ) && is_array( $program['rewards'] ) ? $program['rewards'] : array();
		if ( $rewards ) {
			echo '<h3>' . esc_html__( 'Rewards', 'stammkunde' ) . '</h3><ul class="stammkunde-rewards">';
			foreach ( $rewards as $reward ) {
				echo '<li><span class="stammkunde-reward">' . esc_html( (string) $reward['name'] ) . '</span> <span class="stammkunde-cost">' . esc_html( Stammkunde_Format::points( $reward['points'] ) ) . '</span>' . self::description( $reward ) . '</li>';
			}
			echo '</ul>';
		}
	}

	/**
	 * The member's page.
	 *
	 * @param array $view The member view.
	 */
	private function render_member( array $view ) {
		$balance = isset( $view['balance'] ) && is_array( $view['balance'] ) ? $view['balance'] : array();
		$tier    = isset( $view['tier'] ) && is_array( $view['tier'] ) ? $view['tier'] : array();
		echo '<dl class="stammkunde-balance">';
		echo '<div><dt>' . esc_html__( 'Available', 'stammkunde' ) . '</dt><dd class="stammkunde-available">' . esc_html( number_format_i18n( (int) ( $balance['available'] ?? 0 ) ) ) . '</dd></div>';
		echo '<div><dt>' . esc_html__( 'Pending', 'stammkunde' ) . '</dt><dd class="stammkunde-pending">' . esc_html( number_format_i18n( (int) ( $balance['pending'] ?? 0 ) ) ) . '</dd></div>';
		if ( ! empty( $tier['name'] ) ) {
			echo '<div><dt>' . esc_html__( 'Tier', 'stammkunde' ) . '</dt><dd class="stammkunde-tier">' . esc_html( (string) $tier['name'] ) . '</dd></div>';
		}
		echo '</dl>';
		if ( ! empty( $view['available_value_text'] ) ) {
			// "1.250 Punkte ≈ 12,50 €", worded by the app in the visitor's language.
			echo '<p class="stammkunde-available-value">' . esc_html( (string) $view['available_value_text'] ) . '</p>';
		}
		$maturing = isset( $balance['maturing'] ) && is_array( $balance['maturing'] ) ? $balance['maturing'] : array();
		if ( $maturing ) {
			/* translators: 1: "300 points", 2: a date */
			echo '<p class="stammkunde-note stammkunde-maturing">' . esc_html( sprintf( __( '%1$s become available on %2$s, once the return period is over.', 'stammkunde' ), Stammkunde_Format::points( $maturing[0]['points'] ), Stammkunde_Format::date( $maturing[0]['available_at'] ) ) ) . '</p>';
		}
		$this->render_point_value( $view['point_value'] ?? null );
		$this->render_tier( $tier );
		$this->render_rewards( $view );
		$this->render_codes( isset( $view['codes'] ) && is_array( $view['codes'] ) ? $view['codes'] : array() );
		$this->render_history( isset( $view['history'] ) && is_array( $view['history'] ) ? $view['history'] : array() );
		if ( ! empty( $view['referral'] ) && is_array( $view['referral'] ) ) {
			$this->render_referral( $view['referral'] );
		}
	}

	/**
	 * What a combination offer gives ("Kaufe 2 × Espresso-Bohnen, erhalte 1 × Tasse gratis"), as
	 * the app words it; "" for other rewards and codes.
	 *
	 * @param array $row A reward or code of the view.
	 * @return string Escaped HTML.
	 */
	private static function description( array $row ) {
		if ( empty( $row['description'] ) ) {
			return '';
		}
		return ' <span class="stammkunde-offer">' . esc_html( (string) $row['description'] ) . '</span>';
	}

	/**
	 * "1 Punkt = 1 Cent" (German shops must say what a point is worth).
	 *
	 * @param mixed $value The view's point value.
	 */
	private function render_point_value( $value ) {
		$text = Stammkunde_Format::point_value( $value );
		if ( '' !== $text ) {
			echo '<p class="stammkunde-point-value">' . esc_html( $text ) . '</p>';
		}
	}

	/**
	 * Until when the tier is kept, and what the next one needs.
	 *
	 * @param array $tier The member's tier view.
	 */
	private function render_tier( array $tier ) {
		if ( ! empty( $tier['name'] ) && ! empty( $tier['until'] ) ) {
			/* translators: 1: tier name, 2: a date */
			echo '<p class="stammkunde-note">' . esc_html( sprintf( __( 'You keep the tier %1$s at least until %2$s.', 'stammkunde' ), $tier['name'], Stammkunde_Format::date( $tier['until'] ) ) ) . '</p>';
		}
		if ( empty( $tier['next_name'] ) || ! isset( $tier['missing'] ) ) {
			return;
		}
		if ( ! empty( $tier['missing_money'] ) && is_array( $tier['missing_money'] ) ) {
			/* translators: 1: an amount of money, 2: tier name */
			$text = sprintf( __( 'Spend %1$s more to reach %2$s.', 'stammkunde' ), Stammkunde_Format::money( $tier['missing_money']['amount'], $tier['missing_money']['currency'] ), $tier['next_name'] );
		} else {
			/* translators: 1: "120 points", 2: tier name */
			$text = sprintf( __( 'Collect %1$s more to reach %2$s.', 'stammkunde' ), Stammkunde_Format::points( (int) ceil( (float) $tier['missing'] ) ), $tier['next_name'] );
		}
		echo '<p class="stammkunde-next-tier">' . esc_html( $text ) . '</p>';
		$threshold = isset( $tier['next_threshold'] ) ? (float) $tier['next_threshold'] : 0.0;
		if ( $threshold > 0 ) {
			$progress = max( 0, min( 100, (int) floor( 100 * (float) ( $tier['value'] ?? 0 ) / $threshold ) ) );
			echo '<progress class="stammkunde-progress" max="100" value="' . esc_attr( (string) $progress ) . '">' . esc_html( $progress . ' %' ) . '</progress>';
		}
	}

	/**
	 * Rewards the member can redeem now (one form each), and what the next one needs.
	 *
	 * @param array $view The member view.
	 */
	private function render_rewards( array $view ) {
		echo '<h3>' . esc_html__( 'Rewards you can redeem now', 'stammkunde' ) . '</h3>';
		if ( ! empty( $view['banned'] ) ) {
			echo '<p>' . esc_html__( 'Your account cannot redeem rewards at the moment. Please contact the shop.', 'stammkunde' ) . '</p>';
			return;
		}
		$affordable = isset( $view['affordable'] ) && is_array( $view['affordable'] ) ? $view['affordable'] : array();
		if ( $affordable ) {
			echo '<ul class="stammkunde-rewards">';
			foreach ( $affordable as $reward ) {
				echo '<li>';
				self::redeem_form( (string) $reward['name'], (int) $reward['points'], wc_get_account_endpoint_url( self::ENDPOINT ), false );
				echo self::description( $reward ) . '</li>'; // phpcs:ignore WordPress.Security.EscapeOutput -- escaped in description().
			}
			echo '</ul>';
		}
		$sold_out = self::sold_out( $view );
		foreach ( $sold_out as $reward ) {
			/* translators: %s: reward name */
			echo '<p class="stammkunde-note stammkunde-sold-out">' . esc_html( sprintf( __( '“%s” is sold out at the moment.', 'stammkunde' ), (string) $reward['name'] ) ) . '</p>';
		}
		$next = isset( $view['next_reward'] ) && is_array( $view['next_reward'] ) ? $view['next_reward'] : null;
		if ( $next ) {
			/* translators: 1: "300 points", 2: reward name */
			echo '<p class="stammkunde-next-reward">' . esc_html( sprintf( __( '%1$s more for “%2$s”.', 'stammkunde' ), Stammkunde_Format::points( $next['missing'] ?? 0 ), (string) $next['name'] ) ) . '</p>';
		} elseif ( ! $affordable && ! $sold_out ) {
			echo '<p>' . esc_html__( 'There are no rewards at the moment.', 'stammkunde' ) . '</p>';
		}
	}

	/**
	 * Rewards the member has the points for but cannot redeem because their voucher pool is
	 * empty (`in_stock` false): listed as sold out, without a redeem button (as the Shopify page does).
	 *
	 * @param array $view The member view.
	 * @return array
	 */
	private static function sold_out( array $view ) {
		$rewards = isset( $view['rewards'] ) && is_array( $view['rewards'] ) ? $view['rewards'] : array();
		$found   = array();
		foreach ( $rewards as $reward ) {
			if ( is_array( $reward ) && isset( $reward['in_stock'] ) && false === $reward['in_stock'] && empty( $reward['missing'] ) ) {
				$found[] = $reward;
			}
		}
		return $found;
	}

	/**
	 * The member's codes with their state.
	 *
	 * @param array $codes Codes, newest first.
	 */
	private function render_codes( array $codes ) {
		echo '<h3>' . esc_html__( 'Your codes', 'stammkunde' ) . '</h3>';
		if ( ! $codes ) {
			echo '<p>' . esc_html__( 'No rewards redeemed yet.', 'stammkunde' ) . '</p>';
			return;
		}
		$states = array(
			'pending'  => __( 'Your code is being created. Reload this page in a moment.', 'stammkunde' ),
			'failed'   => __( 'The shop could not create this code; your points were given back.', 'stammkunde' ),
			'expired'  => __( 'expired', 'stammkunde' ),
			'ended'    => __( 'no longer valid', 'stammkunde' ),
			'credited' => __( 'credited to your account', 'stammkunde' ),
		);
		echo '<ul class="stammkunde-codes">';
		foreach ( $codes as $row ) {
			$state = (string) ( $row['state'] ?? '' );
			echo '<li class="stammkunde-code-' . esc_attr( $state ) . '"><span class="stammkunde-reward">' . esc_html( Stammkunde_Format::code_label( $row ) ) . '</span> ';
			echo self::description( $row ); // phpcs:ignore WordPress.Security.EscapeOutput -- escaped in description().
			if ( 'usable' === $state && ! empty( $row['code'] ) ) {
				echo '<span class="stammkunde-code">' . esc_html__( 'Code:', 'stammkunde' ) . ' <strong>' . esc_html( (string) $row['code'] ) . '</strong></span>';
				if ( ! empty( $row['expires_at'] ) ) {
					/* translators: %s: a date */
					echo ' <span class="stammkunde-note">' . esc_html( sprintf( __( 'valid until %s', 'stammkunde' ), Stammkunde_Format::date( $row['expires_at'] ) ) ) . '</span>';
				}
			} elseif ( isset( $states[ $state ] ) ) {
				echo '<span class="stammkunde-note">' . esc_html( $states[ $state ] ) . '</span>';
			}
			echo '</li>';
		}
		echo '</ul>';
	}

	/**
	 * The history: each line says why the points changed.
	 *
	 * @param array $history Entries, newest first.
	 */
	private function render_history( array $history ) {
		echo '<h3>' . esc_html__( 'History', 'stammkunde' ) . '</h3>';
		if ( ! $history ) {
			echo '<p>' . esc_html__( 'No points yet.', 'stammkunde' ) . '</p>';
			return;
		}
		echo '<table class="shop_table stammkunde-history"><thead><tr><th>' . esc_html__( 'Date', 'stammkunde' ) . '</th><th>' . esc_html__( 'Points', 'stammkunde' ) . '</th><th>' . esc_html__( 'Why', 'stammkunde' ) . '</th></tr></thead><tbody>';
		foreach ( $history as $line ) {
			$points = (int) ( $line['points'] ?? 0 );
			echo '<tr><td>' . esc_html( Stammkunde_Format::date( $line['at'] ?? '' ) ) . '</td><td>' . esc_html( ( $points > 0 ? '+' : '' ) . number_format_i18n( $points ) ) . '</td><td>' . esc_html( (string) ( $line['why'] ?? '' ) ) . '</td></tr>';
		}
		echo '</tbody></table>';
	}

	/**
	 * The referral offer with the member's link (the shop's own address with ?sk_ref=CODE)
	 * once the code exists in the shop.
	 *
	 * @param array $referral The referral view.
	 */
	private function render_referral( array $referral ) {
		echo '<h3>' . esc_html__( 'Invite friends', 'stammkunde' ) . '</h3>';
		/* translators: 1: a discount such as "10 %", 2: "500 points" */
		echo '<p>' . esc_html( sprintf( __( 'Your friends get %1$s off their first order, and you get %2$s when they keep it.', 'stammkunde' ), Stammkunde_Format::percent( $referral['friend_discount_percent'] ?? 0 ), Stammkunde_Format::points( $referral['referrer_points'] ?? 0 ) ) ) . '</p>';
		$progress = self::referral_progress( $referral );
		if ( '' !== $progress ) {
			echo '<p class="stammkunde-referral-progress">' . esc_html( $progress ) . '</p>';
		}
		$status = (string) ( $referral['status'] ?? '' );
		if ( 'created' === $status && ! empty( $referral['code'] ) ) {
			echo '<p><label for="stammkunde-referral-link">' . esc_html__( 'Your link to share:', 'stammkunde' ) . '</label><br><input id="stammkunde-referral-link" class="input-text stammkunde-referral-link" type="text" readonly value="' . esc_attr( Stammkunde_Format::referral_link( (string) $referral['code'] ) ) . '"></p>';
		} elseif ( 'failed' === $status ) {
			echo '<p class="stammkunde-note">' . esc_html__( 'Your invite link could not be created in the shop. Please contact the shop.', 'stammkunde' ) . '</p>';
		} else {
			echo '<p class="stammkunde-note">' . esc_html__( 'Your invite link is being created. Reload this page in a moment.', 'stammkunde' ) . '</p>';
		}
	}

	/**
	 * How many friends have brought the member a referral reward, and what the next referral
	 * step gives (extra points, or a lasting member discount); "" when there is neither.
	 *
	 * @param array $referral The referral view (rewarded, next_step).
	 * @return string
	 */
	private static function referral_progress( array $referral ) {
		$rewarded = (int) ( $referral['rewarded'] ?? 0 );
		$step     = isset( $referral['next_step'] ) && is_array( $referral['next_step'] ) ? $referral['next_step'] : null;
		if ( $rewarded <= 0 && null === $step ) {
			return '';
		}
		/* translators: %s: a number of friends */
		$text = sprintf( _n( '%s friend has brought you a referral reward so far.', '%s friends have brought you a referral reward so far.', $rewarded, 'stammkunde' ), number_format_i18n( $rewarded ) );
		if ( null === $step ) {
			return $text;
		}
		$to_go = (int) ( $step['to_go'] ?? 0 );
		if ( ! empty( $step['points'] ) ) {
			/* translators: 1: a number of friends, 2: "2.000 points" */
			$text .= ' ' . sprintf( _n( 'Your next step: with %1$s more friend you get an extra %2$s.', 'Your next step: with %1$s more friends you get an extra %2$s.', $to_go, 'stammkunde' ), number_format_i18n( $to_go ), Stammkunde_Format::points( $step['points'] ) );
		} elseif ( isset( $step['member_discount_percent'] ) ) {
			/* translators: 1: a number of friends, 2: a discount such as "10 %" */
			$text .= ' ' . sprintf( _n( 'Your next step: with %1$s more friend you get a lasting member discount of %2$s.', 'Your next step: with %1$s more friends you get a lasting member discount of %2$s.', $to_go, 'stammkunde' ), number_format_i18n( $to_go ), Stammkunde_Format::percent( $step['member_discount_percent'] ) );
		}
		return $text;
	}

	/**
	 * One redeem form; the key makes a double click redeem once.
	 *
	 * @param string $reward   Reward name.
	 * @param int    $points   Its price in points.
	 * @param string $action   Where the form posts to.
	 * @param bool   $to_cart  Apply the code to the cart afterwards.
	 */
	public static function redeem_form( $reward, $points, $action, $to_cart ) {
		echo '<form method="post" class="stammkunde-redeem" action="' . esc_url( $action ) . '">';
		wp_nonce_field( self::ACTION, '_stammkunde_nonce' );
		echo '<input type="hidden" name="stammkunde_reward" value="' . esc_attr( $reward ) . '">';
		echo '<input type="hidden" name="stammkunde_key" value="' . esc_attr( wp_generate_uuid4() ) . '">';
		if ( $to_cart ) {
			echo '<input type="hidden" name="stammkunde_apply" value="1">';
		}
		echo '<span class="stammkunde-reward">' . esc_html( $reward ) . '</span> <span class="stammkunde-cost">' . esc_html( Stammkunde_Format::points( $points ) ) . '</span> ';
		echo '<button type="submit" class="button">' . esc_html( $to_cart ? __( 'Redeem and apply', 'stammkunde' ) : __( 'Redeem', 'stammkunde' ) ) . '</button>';
		echo '</form>';
	}

	/**
	 * A redeem form posted from this tab (or the cart): redeem, say how it went, redirect
	 * (post/redirect/get). Applying the code to the cart is the cart's part.
	 */
	public function handle_redeem() {
		if ( ! isset( $_POST['_stammkunde_nonce'], $_POST['stammkunde_reward'], $_POST['stammkunde_key'] ) ) {
			return;
		}
		if ( ! is_user_logged_in() || ! wp_verify_nonce( sanitize_text_field( wp_unslash( $_POST['_stammkunde_nonce'] ) ), self::ACTION ) ) {
			wc_add_notice( __( 'The form has expired. Please reload the page and try again.', 'stammkunde' ), 'error' );
			return;
		}
		$reward = sanitize_text_field( wp_unslash( $_POST['stammkunde_reward'] ) );
		$key    = sanitize_text_field( wp_unslash( $_POST['stammkunde_key'] ) );
		$apply  = ! empty( $_POST['stammkunde_apply'] );
		$result = Stammkunde_Plugin::instance()->redeem( get_current_user_id(), $reward, $key );
		if ( null !== $result && ! empty( $result['ok'] ) ) {
			if ( $apply ) {
				Stammkunde_Plugin::instance()->cart()->apply_or_wait( $result['redemption'] );
			} else {
				/* translators: %s: reward name */
				wc_add_notice( sprintf( __( 'You redeemed “%s”. Your code appears below as soon as the shop has created it.', 'stammkunde' ), $reward ), 'success' );
			}
		} elseif ( null !== $result ) {
			wc_add_notice( '' !== $result['message'] ? $result['message'] : __( 'The reward could not be redeemed. Please try again.', 'stammkunde' ), 'error' );
		} else {
			wc_add_notice( __( 'Rewards cannot be redeemed right now. Please try again later.', 'stammkunde' ), 'error' );
		}
		wp_safe_redirect( $apply ? wc_get_cart_url() : wc_get_account_endpoint_url( self::ENDPOINT ) );
		$this->stop();
	}

	/**
	 * End the request after a redirect (replaced in the tests).
	 */
	protected function stop() {
		exit;
	}
}
